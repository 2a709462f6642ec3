"""A counter that stops changing while power keeps changing: the power windows waiting for its next change stay
bounded (merged to a common resolution past reference.integrate.MAX_PENDING_WINDOWS), the native KnotBuilder and its
twin agree on the merged curve, and merging only coarsens the curve's shape inside that one interval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastmeter import _core
from fastmeter.reference import integrate as twin

POLL_NS = 1_000_000
STUCK = 6_000  # polls without a counter change: ~6x the pending limit's worth of power changes


def power_w(t_ns: np.ndarray) -> np.ndarray:
    return 200.0 + 150.0 * np.sin(2 * math.pi * t_ns * 1e-9 / 0.37)


def stuck_counter_stream(power_window_ns: int) -> dict:
    """Polls every 1 ms: the counter's first change at poll 1, then none for STUCK polls, then one change per poll.
    Power is held for the first and last few polls of the stuck interval, so no window reaches past its ends."""
    n = STUCK + 40
    t = np.arange(n, dtype=np.int64) * POLL_NS + 10**9
    p = power_w(t)
    p[:8] = p[8]
    p[STUCK - 8 : STUCK + 1] = p[STUCK - 8]
    energy = np.cumsum(p * POLL_NS * 1e-9)  # the counter's value where it is read
    changed = np.zeros(n, dtype=bool)
    changed[1] = True
    changed[STUCK + 1 :] = True
    for i in range(2, STUCK + 1):
        energy[i] = energy[1]  # stuck: the poll reads the old value
    return {
        "t_ns": t,
        "energy_j": energy,
        "power_w": p,
        "counter": np.ones(n, dtype=bool),
        "changed": changed,
        "power_window_ns": power_window_ns,
    }


def interval_knots(knots, s: dict) -> int:
    """Knots strictly inside the stuck interval (between the first change point and the one that ends it)."""
    t = knots[0]
    return int(np.sum((t > s["t_ns"][1]) & (t < s["t_ns"][STUCK + 1] - POLL_NS // 2)))


@pytest.mark.parametrize("power_window_ns", [3_000_000, 500_000], ids=["overlapping", "gaps"])
def test_pending_windows_are_bounded_and_the_twin_agrees(power_window_ns: int) -> None:
    s = stuck_counter_stream(power_window_ns)
    native = _core.build_knots(**s)
    capped = twin.build_knots(**s)
    uncapped = twin.build_knots(**s, max_pending_windows=10**9)
    np.testing.assert_array_equal(native[0], capped[0])
    np.testing.assert_allclose(native[1], capped[1], rtol=1e-12, atol=0)
    np.testing.assert_allclose(native[2], capped[2], rtol=1e-12, atol=0)
    # Not vacuous: every poll's power change made a window, so the unmerged interval holds ~2 knots per poll.
    assert interval_knots(uncapped, s) > 2 * twin.MAX_PENDING_WINDOWS
    assert interval_knots(native, s) <= 2 * twin.MAX_PENDING_WINDOWS + 1
    # The interval still ends where the counter says: at its change point (mid-way between the polls), with the
    # counter's energy; and the curve never decreases.
    end = int(np.searchsorted(native[0], s["t_ns"][STUCK] + POLL_NS // 2))
    assert native[0][end] == s["t_ns"][STUCK] + POLL_NS // 2
    assert native[1][end] == s["energy_j"][STUCK + 1]
    assert np.all(np.diff(native[1]) >= 0)


def test_merging_keeps_the_energy_at_every_merged_windows_end() -> None:
    # Overlapping windows cover the interval without gaps, so a merged window holds exactly its members' share of
    # the interval: wherever the merged curve has a knot (a merged window's end, also a member's end), both curves
    # agree up to rounding; in between they differ by at most that window's energy.
    s = stuck_counter_stream(3_000_000)
    native = _core.build_knots(**s)
    uncapped = twin.build_knots(**s, max_pending_windows=10**9)
    inside = (native[0] > s["t_ns"][1]) & (native[0] < s["t_ns"][STUCK])
    t_kept = native[0][inside]
    where = np.searchsorted(uncapped[0], t_kept)
    np.testing.assert_array_equal(uncapped[0][where], t_kept)  # every merged knot is an unmerged knot
    np.testing.assert_allclose(native[1][inside], uncapped[1][where], rtol=1e-9, atol=0)
    grid = np.linspace(s["t_ns"][2], s["t_ns"][STUCK - 1], 5000).astype(np.int64)
    merged_e = _core.energy_at(native[0], native[1], native[2], grid)
    full_e = _core.energy_at(uncapped[0], uncapped[1], uncapped[2], grid)
    # Readings are scaled to the counter's energy by a factor near 1: 10% of headroom.
    widest_ns = int(np.diff(t_kept).max())
    assert np.max(np.abs(merged_e - full_e)) <= 1.1 * s["power_w"].max() * widest_ns * 1e-9
    assert np.any(merged_e != full_e)  # it did merge
