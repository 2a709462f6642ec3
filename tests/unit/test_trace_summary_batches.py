"""`show`'s per-channel figures read batch by batch (bounded memory) equal the figures of the whole table, whatever
the batch boundaries, and match the whole-array definition of peak power (`peak_power_w`: the steepest slope
between the energy curve's knots)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmeter.analysis.trace_summary import peak_power_w, summarize_batches
from fastmeter.meter import SAMPLES_SCHEMA


def two_channel_trace(rng: np.random.Generator, n: int) -> tuple[pa.Table, dict[str, float]]:
    """Channel "a" changes at every poll and has power readings; "b" has none and updates at ~30% of the polls (a
    counter slower than the sampler, repeating its value in between); rows interleave."""
    t = np.cumsum(rng.integers(1, 5_000_000, n)).astype(np.int64)
    power_a = rng.uniform(50, 400, n)
    e_a = np.cumsum(power_a * 1e-3)
    steps_b = rng.uniform(0, 2, n) * (rng.random(n) < 0.3)
    e_b = np.cumsum(steps_b)
    rows_t = np.repeat(t, 2)
    names = np.tile(np.array([0, 1], dtype=np.int32), n)
    energy = np.column_stack([e_a, e_b]).ravel()
    power = np.column_stack([power_a, np.full(n, np.nan)]).ravel()
    table = pa.Table.from_arrays(
        [
            pa.array(rows_t),
            pa.DictionaryArray.from_arrays(pa.array(names), pa.array(["a", "b"])),
            pa.array(energy),
            pa.array(power, mask=np.isnan(power)),
        ],
        schema=SAMPLES_SCHEMA,
    )
    return table, {"a_energy": e_a[-1] - e_a[0], "a_peak": peak_power_w(t, e_a), "b_peak": peak_power_w(t, e_b)}


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 300), st.integers(1, 64), st.integers(0, 2**32 - 1))
def test_batch_boundaries_do_not_change_the_figures(n: int, batch_rows: int, seed: int) -> None:
    table, truth = two_channel_trace(np.random.default_rng(seed), n)
    whole = summarize_batches([table.combine_chunks().to_batches()[0]], ["a", "b"], {"a": 10.0})
    pieces = summarize_batches(table.to_batches(max_chunksize=batch_rows), ["a", "b"], {"a": 10.0})
    assert pieces[:2] == whole[:2] and pieces[1] == 2 * n
    for x, y in zip(pieces[2], whole[2]):
        assert x.energy_j == pytest.approx(y.energy_j, rel=1e-12)
        assert x.peak_power_w == pytest.approx(y.peak_power_w, rel=1e-12, nan_ok=True)
    a, b = pieces[2]
    assert a.energy_j == pytest.approx(truth["a_energy"], rel=1e-12)
    assert a.peak_power_w == pytest.approx(truth["a_peak"], rel=1e-12, nan_ok=True)
    assert b.peak_power_w == pytest.approx(truth["b_peak"], rel=1e-12, nan_ok=True)
    assert a.net_energy_j == pytest.approx(a.energy_j - 10.0 * a.energy_j / a.avg_power_w, rel=1e-9)
    assert b.net_energy_j is None
