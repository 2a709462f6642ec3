"""Knot decimation and the update-period histogram: the native kernels agree with their twins written from the
specification, and decimation keeps what it promises (exact energy at kept knots, whole slow intervals, a bounded
change of the curve)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmeter import _core
from fastmeter.reference import integrate as ref


@st.composite
def knot_runs(draw: st.DrawFn) -> dict:
    """Knots as a channel makes them: increasing times, non-decreasing energies, some with NaN slopes, and anchors
    (change points) with runs of non-anchor knots between them (power fusion inside a counter interval)."""
    n = draw(st.integers(1, 200))
    gaps = draw(st.lists(st.integers(1, 40_000_000), min_size=n, max_size=n))
    t = np.cumsum(gaps).astype(np.int64) + draw(st.integers(-(10**12), 10**12))
    e = np.cumsum(draw(st.lists(st.floats(0, 50), min_size=n, max_size=n)))
    p = np.array(draw(st.lists(st.one_of(st.floats(0, 800), st.just(float("nan"))), min_size=n, max_size=n)))
    anchor = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    return {"t": t, "e": e, "p": p, "anchor": anchor, "res": draw(st.sampled_from([0, 1_000_000, 10_000_000, 10**8]))}


@settings(max_examples=300, deadline=None)
@given(knot_runs())
def test_decimation_matches_twin(k: dict) -> None:
    native = _core.decimate_knots(k["t"], k["e"], k["p"], k["anchor"], k["res"])
    twin = ref.decimate_knots(k["t"], k["e"], k["p"], k["anchor"], k["res"])
    for a, b in zip(native, twin):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=300, deadline=None)
@given(knot_runs())
def test_decimation_keeps_exact_knots_and_bounds_the_curve_change(k: dict) -> None:
    t, e, p, anchor, res = k["t"], k["e"], k["p"], k["anchor"], k["res"]
    kt, ke, kp = _core.decimate_knots(t, e, p, anchor, res)
    n = len(t)
    # A subset of the knots, unchanged, with both ends kept.
    idx = np.searchsorted(t, kt)
    np.testing.assert_array_equal(t[idx], kt)
    np.testing.assert_array_equal(e[idx], ke)
    np.testing.assert_array_equal(p[idx], kp)
    assert idx[0] == 0 and idx[-1] == n - 1
    is_anchor = anchor.copy()
    is_anchor[[0, -1]] = True
    for a, b in zip(idx[:-1], idx[1:]):
        if b > a + 1:
            # A merge: it spans at most the resolution, and only ever drops whole intervals between anchors.
            assert t[b] - t[a] <= res
            assert is_anchor[a] and is_anchor[b]
    # Between kept knots both curves are monotone through the same exact end points, so they differ by at most the
    # energy of the enclosing kept interval.
    q = np.linspace(t[0], t[-1], 97).astype(np.int64)
    before = _core.energy_at(t, e, p, q)
    after = _core.energy_at(kt, ke, kp, q)
    j = np.clip(np.searchsorted(kt, q, side="right"), 1, len(kt) - 1) if len(kt) > 1 else np.zeros(len(q), int)
    bound = ke[j] - ke[np.maximum(j - 1, 0)]
    assert np.all(np.abs(after - before) <= bound + 1e-9 * np.maximum(1.0, np.abs(before)))


def test_slow_intervals_are_kept_whole_to_the_last_bit() -> None:
    # A 100 ms counter with fused knots inside each interval, thinned to 10 ms: nothing may change.
    rng = np.random.default_rng(7)
    t = np.sort(rng.choice(np.arange(0, 10**10, 1_000_000), 400, replace=False)).astype(np.int64)
    anchor = np.zeros(len(t), dtype=bool)
    anchor[::4] = True
    t[::4] = np.arange(0, len(t), 4) * 100_000_000  # change points every 100 ms ...
    t[1::4], t[2::4], t[3::4] = t[::4] + 5_000_000, t[::4] + 50_000_000, t[::4] + 75_000_000  # ... fused knots
    e = np.cumsum(rng.uniform(0, 5, len(t)))
    p = rng.uniform(50, 300, len(t))
    kt, ke, kp = _core.decimate_knots(t, e, p, anchor, 10_000_000)
    np.testing.assert_array_equal(kt, t)
    np.testing.assert_array_equal(ke, e)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 2**42), min_size=2, max_size=60))
def test_update_period_is_the_bucketed_upper_median(intervals: list[int]) -> None:
    t = np.cumsum([0, *intervals]).astype(np.int64)
    power = np.arange(len(t), dtype=np.float64) + 1.0  # changes at every poll: one update per poll
    e = np.zeros(len(t))
    flags = np.zeros(len(t), dtype=bool)
    native = _core.build_knots(t, e, power, flags, flags, 0)[3]
    twin = ref.build_knots(t, e, power, flags, flags, 0)[3]
    assert native == twin or (np.isnan(native) and np.isnan(twin))
    # Update instants: mid-way between the first two polls (the first change), then at every poll (each one saw a
    # change, so the value is current when read). The histogram reports their upper median to 1/64 of it.
    instants = np.concatenate([[t[0] + (t[1] - t[0]) // 2], t[2:]])
    d = np.diff(instants)
    if len(d) >= 2:
        true_ns = float(np.sort(d)[len(d) // 2])
        assert abs(native * 1e9 - true_ns) <= true_ns / 64 + 1 or true_ns >= 2**40
    else:
        assert np.isnan(native)
