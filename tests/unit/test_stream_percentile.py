"""Exact percentiles over streamed pieces (fastmeter.bench.stream_percentile) against numpy.percentile on all the
values at once: the same number, whatever the pieces, the narrowing bins or the collection threshold."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmeter.bench.stream_percentile import percentiles


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(0, 10**12), min_size=1, max_size=400),
    cuts=st.lists(st.integers(0, 400), max_size=5),
    q=st.floats(0, 100),
    bins=st.integers(2, 70),
    collect_max=st.integers(1, 500),
)
def test_equals_numpy_percentile_on_all_values(
    values: list[int], cuts: list[int], q: float, bins: int, collect_max: int
) -> None:
    x = np.array(values, dtype=np.int64)
    pieces = np.split(x, sorted(c % (len(x) + 1) for c in cuts))
    qs = [50.0, 99.0, q]
    got = percentiles(lambda: iter(pieces), qs, 1e6, bins=bins, collect_max=collect_max)
    assert got == [float(np.percentile(x / 1e6, v)) for v in qs]


def test_many_equal_values_narrow_to_one() -> None:
    """Gaps that all but agree (a server's fixed token gap): the wanted rank's range shrinks pass by pass."""
    x = np.full(5000, 2_000_000, dtype=np.int64)
    x[::7] += 1
    pieces = np.array_split(x, 9)
    got = percentiles(lambda: iter(pieces), [50, 99], 1e6, bins=4, collect_max=3)
    assert got == [float(np.percentile(x / 1e6, 50)), float(np.percentile(x / 1e6, 99))]


def test_no_values_is_unknown() -> None:
    assert all(math.isnan(v) for v in percentiles(lambda: iter([np.zeros(0, dtype=np.int64)]), [50, 99]))
