"""Run and request energy on one curve, with int64 nanoseconds end to end: attribution near 1e16 ns (~115 days of
uptime, where float64 steps by 2 ns) against the exact time-share split, and `total_curve` against the Meter's own
windows."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmeter
from fastmeter.adapters.base import RequestRecord
from fastmeter.attribution import BoundedCurve, total_curve
from fastmeter.bench.energy import attribute_requests

T0_NS = 10**16  # ~115 days of CLOCK_MONOTONIC
POWER_W = 250.0


def linear_curve(t_ns: np.ndarray) -> BoundedCurve:
    """Constant power from T0: exact in the integer offset, so the truth below needs no interpolation (bound 0)."""
    energy_j = POWER_W * (np.asarray(t_ns, dtype=np.int64) - T0_NS) * 1e-9
    return BoundedCurve(energy_j, np.zeros(len(energy_j)), {})


def time_share_s(starts: list[int], ends: list[int], span: tuple[int, int]) -> np.ndarray:
    """Seconds each request is charged for: every interval between events is split equally among the requests
    active over all of it (integer arithmetic on the instants)."""
    events = sorted({*starts, *ends, *span})
    out = np.zeros(len(starts))
    s, e = np.array(starts), np.array(ends)
    for a, b in zip(events[:-1], events[1:]):
        active = (s <= a) & (e >= b)
        if active.any():
            out[active] += (b - a) * 1e-9 / active.sum()
    return out


requests = st.lists(st.tuples(st.integers(1, 10**9), st.integers(0, 10**9), st.integers(0, 3)), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(requests, st.integers(0, 1))
def test_attribution_keeps_every_nanosecond_after_115_days(reqs: list[tuple[int, int, int]], odd: int) -> None:
    records = []
    for i, (offset, length, n_chunks) in enumerate(reqs):
        start = T0_NS + 2 * offset + odd  # odd instants are exactly where float64 rounds
        end = start + length
        chunks = [end - k for k in range(n_chunks, 0, -1) if end - k >= start] + [end]
        records.append(
            RequestRecord(
                f"r{i}",
                send_ns=start,
                first_token_ns=end,
                end_ns=end,
                chunk_t_ns=chunks,
                chunk_tokens=[1] * len(chunks),
            )
        )
    span = (T0_NS, max(r.end_ns for r in records) + 1)  # type: ignore[type-var]
    a, info = attribute_requests(linear_curve, records, span, "time-share", idle_power_w=POWER_W, update_period_s=0.0)
    assert info == {"uncertainty": "bound", "uncertainty_heuristic_points": 0}
    np.testing.assert_array_equal(a.uncertainty_j, 0.0)  # an exact curve: nothing to misattribute
    share_s = time_share_s([r.send_ns for r in records], [r.end_ns for r in records], span)  # type: ignore[misc]
    # A femtosecond of float rounding in the sums; a lost nanosecond would be a million times more.
    np.testing.assert_allclose(a.attributed_s, share_s, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(a.energy_j, POWER_W * share_s, rtol=1e-9, atol=1e-12)
    # The first token is each request's end: all its energy is prefill.
    np.testing.assert_allclose(a.prefill_energy_j, a.energy_j, rtol=1e-12, atol=1e-15)
    assert a.span_s == (span[1] - span[0]) * 1e-9
    # At exactly the idle power, every request's and the idle time's net energy is zero (to rounding).
    np.testing.assert_allclose(a.net_energy_j, 0.0, atol=1e-9)


def test_total_curve_is_the_curve_of_the_meters_windows() -> None:
    with fastmeter.Meter("synthetic", 500) as m:
        windows = []
        for _ in range(5):
            with m.window() as w:
                time.sleep(0.03)
            windows.append(w)
    t = np.array([x for w in windows for x in (w.t0_ns, w.t1_ns)], dtype=np.int64)
    e = total_curve(m, t)
    assert e.dtype == np.float64 and (np.diff(e) >= 0).all()
    for i, w in enumerate(windows):
        assert e[2 * i + 1] - e[2 * i] == pytest.approx(w.energy_j, rel=1e-12)
    # Each counted channel once: the sum of the channels' own cumulative curves.
    counted = [c.name for c in m.channels if c.in_total]
    assert e == pytest.approx(sum(m.cumulative_at(t)[n] for n in counted), rel=1e-12)
