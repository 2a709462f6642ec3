"""The calibration estimator on streams computed from the emulator's analytic model (exact, no process)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmeter.calibrate.estimate import calibrate_gpu, counter_vs_power_pct, find_updates
from fastmeter.calibrate.schedule import Schedule, jittered_square, schedule_from_durations, square_schedule
from fastmeter.errors import CalibrationError
from tests.calibration_helpers import HIGH_W, LOW_W, jittered_load
from tests.emulators.nvml import GpuSpec

T0_NS = 10**12


def model_stream(
    gpu: GpuSpec, start_ns: int, duration_s: float, poll_us: float, seed: int = 1, stall_ms: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What a poller sees: irregular polls (+-50% around poll_us), integer mJ and floored mW like NVML; with
    stall_ms, about one poll in 150 comes up to stall_ms late (a descheduled poller)."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * 1e6 / poll_us)
    gaps_us = rng.uniform(0.5, 1.5, n) * poll_us
    gaps_us += (rng.random(n) < 1 / 150) * rng.uniform(0, stall_ms * 1e3, n)
    t = start_ns + np.cumsum(gaps_us * 1e3).astype(np.int64)
    counter = np.array([gpu.counter_mj(int(x)) for x in t], float)
    instant = np.array([math.floor(gpu.instant_power_mw(int(x))) for x in t], float) * 1e-3
    average = np.array([math.floor(gpu.average_power_mw(int(x))) for x in t], float) * 1e-3
    return t, counter, instant, average


# (counter refresh, power refresh, instant window, average window, power delay, counter delay), all ms
CONFIGS = [
    (100, 100, 25, 1000, 0, 0),
    (100, 100, 25, 1000, 10, 5),
    (20, 20, 10, 200, 0, 0),
    (10, 50, 50, 500, 30, 0),
]


@pytest.mark.parametrize("stall_ms", [0.0, 40.0])
@pytest.mark.parametrize(("counter_ms", "power_ms", "window_ms", "average_ms", "delay_ms", "cdelay_ms"), CONFIGS)
def test_recovers_configured_period_window_and_delay(
    counter_ms: float,
    power_ms: float,
    window_ms: float,
    average_ms: float,
    delay_ms: float,
    cdelay_ms: float,
    stall_ms: float,
) -> None:
    wave, sched = jittered_load(T0_NS, 370.0, 7.0)
    gpu = GpuSpec(
        waveform=wave,
        t0_ns=T0_NS,
        counter_refresh_ms=counter_ms,
        power_refresh_ms=power_ms,
        power_window_ms=window_ms,
        average_window_ms=average_ms,
        power_delay_ms=delay_ms,
        counter_delay_ms=cdelay_ms,
    )
    result = calibrate_gpu(*model_stream(gpu, T0_NS + 10**9, 5.0, 700.0, stall_ms=stall_ms), sched)
    f = result["fields"]
    truth = {
        "energy_counter": (counter_ms, counter_ms, cdelay_ms),
        "instant_power": (power_ms, window_ms, delay_ms),
        "average_power": (power_ms, average_ms, delay_ms),
    }
    for name, (period, window, delay) in truth.items():
        assert f[name]["update_resolved"]
        assert f[name]["update_period_ms"] == pytest.approx(period, abs=0.05)
        assert f[name]["averaging_window_ms"] == pytest.approx(window, abs=0.5)
        assert f[name]["delay_ms"] == pytest.approx(delay, abs=0.5)
        assert f[name]["low_w"] == pytest.approx(LOW_W, abs=0.5)
        assert f[name]["high_w"] == pytest.approx(HIGH_W, abs=0.5)


def test_continuous_exact_fields_are_unresolved_and_agree() -> None:
    wave, sched = jittered_load(T0_NS, 200.0, 4.0)
    gpu = GpuSpec(waveform=wave, t0_ns=T0_NS, average_window_ms=100.0)  # refresh 0: fresh at every poll
    t, c, i, a = model_stream(gpu, T0_NS + 10**9, 2.5, 700.0)
    result = calibrate_gpu(t, c, i, a, sched)
    inst = result["fields"]["instant_power"]
    assert not inst["update_resolved"]
    assert inst["update_period_ms"] == pytest.approx(0.7, abs=0.1)  # the polling interval, an upper bound
    assert inst["averaging_window_ms"] == pytest.approx(0.0, abs=0.5)
    assert inst["delay_ms"] == pytest.approx(0.0, abs=0.5)
    assert result["fields"]["average_power"]["averaging_window_ms"] == pytest.approx(100.0, abs=0.5)
    # exact power held between ~0.7 ms polls: only the polls straddling the edges miss, about 0.1% here
    assert result["counter_vs_power_pct"] == pytest.approx(0.0, abs=0.5)


def test_part_time_power_disagrees_with_the_counter_as_the_model_says() -> None:
    """Instant power sees 25 ms of each 100 ms: its integral misses what the counter sees, by the amount the
    exact model predicts from the same polls."""
    wave, _ = jittered_load(T0_NS, 150.0, 5.0, seed=11)
    gpu = GpuSpec(waveform=wave, t0_ns=T0_NS, counter_refresh_ms=100, power_refresh_ms=100, power_window_ms=25)
    t, c, i, _ = model_stream(gpu, T0_NS + 10**9, 3.0, 500.0)
    ch = np.nonzero(np.diff(c))[0] + 1
    i0, i1 = ch[0], ch[-1]
    expected = (
        100 * (np.sum(i[i0:i1] * np.diff(t[i0 : i1 + 1])) * 1e-9 - (c[i1] - c[i0]) * 1e-3) / ((c[i1] - c[i0]) * 1e-3)
    )
    assert counter_vs_power_pct(t, c, i) == pytest.approx(expected, rel=1e-12)
    assert abs(expected) > 0.5  # the part-time view really is off here


def test_too_few_changes_is_a_clear_error() -> None:
    t = np.arange(100, dtype=np.int64) * 10**6
    with pytest.raises(CalibrationError, match="run longer"):
        find_updates(t, np.full(100, 5.0))


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**16), period_ms=st.floats(20, 800), a_s=st.floats(-1, 5), b_s=st.floats(-1, 5))
def test_on_time_is_the_integral_of_the_indicator(seed: int, period_ms: float, a_s: float, b_s: float) -> None:
    sched = schedule_from_durations(T0_NS, jittered_square(period_ms, 0.4, 3.0, seed))
    lo, hi = sorted((T0_NS + int(a_s * 1e9), T0_NS + int(b_s * 1e9)))
    clipped = np.clip(sched.off_ns, lo, hi) - np.clip(sched.on_ns, lo, hi)
    got = sched.on_time_s(np.array([hi]))[0] - sched.on_time_s(np.array([lo]))[0]
    assert got == pytest.approx(clipped.sum() * 1e-9, abs=1e-9)


def test_square_schedule_matches_the_emulator_square() -> None:
    s = square_schedule(T0_NS, 0.25, 0.3, T0_NS, T0_NS + 10**9)
    probe = T0_NS + np.arange(0, 10**9, 10**6, dtype=np.int64)
    frac = ((probe - T0_NS) * 1e-9 / 0.25) % 1.0
    assert np.array_equal(s.is_on(probe), frac < 0.3 - 1e-9)


def test_bad_schedules_are_rejected() -> None:
    with pytest.raises(CalibrationError, match="disjoint"):
        Schedule(np.array([0, 5]), np.array([10, 20]))
    with pytest.raises(CalibrationError, match="0 < duty < 1"):
        jittered_square(100.0, 1.0, 1.0)
