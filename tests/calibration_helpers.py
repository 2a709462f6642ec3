"""Shared by the calibration tests: an emulated GPU whose waveform is a jittered square load."""

from __future__ import annotations

from fastmeter.calibrate.schedule import Schedule, jittered_square, schedule_from_durations
from tests.emulators.nvml import Steps

LOW_W, HIGH_W = 80.0, 300.0


def jittered_load(t0_ns: int, period_ms: float, duration_s: float, seed: int = 3) -> tuple[Steps, Schedule]:
    """The emulator waveform (low before t0_ns, then the load) and the matching schedule, both from t0_ns."""
    sched = schedule_from_durations(t0_ns, jittered_square(period_ms, 0.5, duration_s, seed))
    points = [(-1e3, LOW_W)]
    for on, off in zip(sched.on_ns, sched.off_ns):
        points += [((on - t0_ns) * 1e-9, HIGH_W), ((off - t0_ns) * 1e-9, LOW_W)]
    return Steps(tuple(points)), sched
