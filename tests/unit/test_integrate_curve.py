"""Exact expectations for the accumulator, knot placement, fusion and the curve's ends (native and twin)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastmeter import _core
from fastmeter.reference.integrate import READ_COUNTER, READ_FAILED, READ_POWER
from fastmeter.reference.powersim import TWIN

KERNELS = pytest.mark.parametrize("k", [_core, TWIN], ids=["native", "twin"])
MS = 1_000_000
NAN = math.nan


def accumulate(k, counter_raw, power_w=None, flags=None, unit_j=1e-3, range_=0, has_counter=True, t_ns=None):
    n = len(counter_raw)
    t_ns = np.arange(n, dtype=np.int64) * MS if t_ns is None else np.asarray(t_ns, dtype=np.int64)
    power_w = np.full(n, NAN) if power_w is None else np.asarray(power_w, dtype=np.float64)
    flags = np.full(n, READ_COUNTER, dtype=np.uint32) if flags is None else np.asarray(flags, dtype=np.uint32)
    return k.accumulate(
        t_ns, np.asarray(counter_raw, dtype=np.uint64), power_w, flags, unit_j, range_, has_counter
    )


@KERNELS
def test_counter_wrap_adds_the_ticks_across_the_wrap(k) -> None:
    energy_j, _, changed = accumulate(k, [995, 999, 3, 3, 10], range_=1000)
    np.testing.assert_allclose(energy_j, [0.0, 0.004, 0.008, 0.008, 0.015])
    assert changed.tolist() == [False, True, True, False, True]


@KERNELS
def test_counter_reset_contributes_nothing_and_counting_resumes(k) -> None:
    energy_j, _, _ = accumulate(k, [500, 700, 20, 25])
    np.testing.assert_allclose(energy_j, [0.0, 0.2, 0.2, 0.205])


@KERNELS
def test_missed_counter_reading_loses_no_energy(k) -> None:
    flags = [READ_COUNTER, 0, READ_POWER, READ_FAILED | READ_COUNTER, READ_COUNTER]
    energy_j, counter, changed = accumulate(k, [100, 0, 0, 0, 400], power_w=[5.0] * 5, flags=flags)
    np.testing.assert_allclose(energy_j, [0.0, 0.0, 0.0, 0.0, 0.3])
    assert counter.tolist() == [True, False, False, False, True]
    assert changed.tolist() == [False, False, False, False, True]


@KERNELS
def test_power_channel_integrates_a_ramp_exactly(k) -> None:
    t_ns = np.array([0, 1, 3, 4, 7], dtype=np.int64) * MS
    power_w = 100.0 + 1e-6 * t_ns  # +1 W per ms: the trapezoid rule is exact for it
    flags = [READ_POWER, READ_POWER, 0, READ_POWER, READ_POWER]
    energy_j, counter, _ = accumulate(k, [0] * 5, power_w, flags, has_counter=False, t_ns=t_ns)
    exact = 100.0 * t_ns * 1e-9 + 0.5e-15 * t_ns.astype(np.float64) ** 2  # 100 W + 1 W/ms
    exact[2] = exact[1]  # no reading at poll 2: the energy waits for the next one, which spans the gap
    np.testing.assert_allclose(energy_j, exact, rtol=1e-12)
    assert not counter.any()


def slow_counter_stream(change_polls, energies_j, n, power_w=None):
    """Polls every ms; the cumulative energy steps to energies_j[i] at poll change_polls[i]."""
    t_ns = np.arange(n, dtype=np.int64) * MS + 1000 * MS
    energy_j = np.zeros(n)
    changed = np.zeros(n, dtype=bool)
    for p, e in zip(change_polls, energies_j):
        energy_j[p:] = e
        changed[p] = True
    power_w = np.full(n, NAN) if power_w is None else np.asarray(power_w, dtype=np.float64)
    return t_ns, energy_j, power_w, np.ones(n, dtype=bool), changed


@KERNELS
def test_knots_sit_mid_gap_and_the_curve_is_linear_between_them(k) -> None:
    t, e, p, c, ch = slow_counter_stream([100, 200, 300], [10.0, 30.0, 40.0], 350)
    kt, ke, kp, period_s = k.build_knots(t, e, p, c, ch, 25 * MS)
    assert (kt - 1000 * MS).tolist() == [99_500_000, 199_500_000, 299_500_000]
    np.testing.assert_allclose(ke, [10.0, 30.0, 40.0])
    assert period_s == pytest.approx(0.1, rel=1 / 128)  # histogram bucket centre: buckets are 1/64 wide
    q = np.array([149_500_000, 249_500_000], dtype=np.int64) + 1000 * MS
    np.testing.assert_allclose(k.energy_at(kt, ke, kp, q), [20.0, 35.0])
    # Start of the run: extended back with the first interval's power (200 W), not pinned to 0 at the first poll.
    np.testing.assert_allclose(k.energy_at(kt, ke, kp, t[:1]), [10.0 - 200.0 * 0.0995])
    # After the last knot: the last interval's slope (no power readings), 100 W.
    np.testing.assert_allclose(k.energy_at(kt, ke, kp, t[-1:]), [40.0 + 100.0 * 0.0495])


@KERNELS
def test_power_windows_split_an_interval_and_keep_its_energy_exact(k) -> None:
    # Counter steps every 100 polls; power changes at the same polls and reports the last 25 ms at 400 W.
    power_w = np.full(400, 100.0)
    for start in (100, 300):
        power_w[start : start + 100] = 400.0
    t, e, p, c, ch = slow_counter_stream([100, 200, 300], [10.0, 30.0, 40.0], 400, power_w)
    kt, ke, kp, _ = k.build_knots(t, e, p, c, ch, 25 * MS)
    rel = (kt - 1000 * MS).tolist()
    # [99.5, 199.5] holds 20 J: 25 ms at 100 W (the reading at 199.5) and 75 ms of (20 - 2.5) / 0.075 W.
    assert rel == [99_500_000, 174_500_000, 199_500_000, 274_500_000, 299_500_000]
    np.testing.assert_allclose(ke, [10.0, 27.5, 30.0, 30.0, 40.0], atol=1e-9)
    # Slopes: the measured power next to each knot (the first knot: the reading when it was made).
    np.testing.assert_allclose(kp, [400.0, 100.0, 100.0, 400.0, 400.0])
    q = np.array([187_000_000, 230_000_000, 287_000_000, 310_000_000], dtype=np.int64) + 1000 * MS
    # Inside a measured window the curve is its straight line; a piece holding no energy stays flat; after the
    # newest knot it extends with the latest reading.
    np.testing.assert_allclose(k.energy_at(kt, ke, kp, q), [28.75, 30.0, 35.0, 44.2], atol=1e-9)


@KERNELS
def test_counter_that_changes_every_poll_is_placed_at_the_poll(k) -> None:
    n = 50
    t = np.arange(n, dtype=np.int64) * MS + np.tile([0, 300_000], n // 2)  # jittery polls
    e = 0.25 * t * 1e-6  # 250 W, read exactly at each poll
    kt, ke, _, period_s = k.build_knots(
        t, e, np.full(n, NAN), np.ones(n, bool), np.r_[False, np.ones(n - 1, bool)]
    )
    # Every knot sits at the poll that read it, the first one too once the next poll shows the counter moving.
    assert kt.tolist() == t[1:].tolist()
    q = np.arange(5 * MS, 45 * MS, 77_777, dtype=np.int64)
    np.testing.assert_allclose(k.energy_at(kt, ke, np.full(len(kt), NAN), q), 0.25 * q * 1e-6, rtol=1e-12)
    assert period_s == pytest.approx(0.001, rel=0.31)


@KERNELS
def test_power_channel_knots_sit_mid_window(k) -> None:
    t = np.arange(10, dtype=np.int64) * MS
    e = np.arange(10) * 0.1
    kt, _, _, _ = k.build_knots(t, e, np.full(10, 100.0), np.zeros(10, bool), np.zeros(10, bool), 4 * MS)
    assert kt.tolist() == (t - 2 * MS).tolist()


@KERNELS
def test_energy_at_ends(k) -> None:
    none = np.array([], dtype=np.int64)
    assert k.energy_at(none, np.array([]), np.array([]), np.array([5], dtype=np.int64)).tolist() == [0.0]
    one_t = np.array([10 * MS], dtype=np.int64)
    q = np.array([0, 10 * MS, 30 * MS], dtype=np.int64)
    np.testing.assert_allclose(k.energy_at(one_t, np.array([5.0]), np.array([100.0]), q), [4.0, 5.0, 7.0])
    np.testing.assert_allclose(k.energy_at(one_t, np.array([5.0]), np.array([NAN]), q), [5.0, 5.0, 5.0])
