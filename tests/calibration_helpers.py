"""Shared by the calibration tests: an emulated GPU whose waveform is a jittered square load."""

from __future__ import annotations

import numpy as np

from fastmeter.calibrate.schedule import Schedule, jittered_square, schedule_from_durations
from tests.emulators.nvml import Steps

LOW_W, HIGH_W = 80.0, 300.0


def jittered_load(t0_ns: int, period_ms: float, duration_s: float, seed: int = 3) -> tuple[Steps, Schedule]:
    """The emulator waveform (low before t0_ns, then the load) and the matching schedule, both from t0_ns.
    Step times are rounded to 1 us so a config line stays within the emulator's 2048 characters."""
    planned = schedule_from_durations(0, jittered_square(period_ms, 0.5, duration_s, seed))
    edges_s = [
        (round(float(on) * 1e-9, 6), round(float(off) * 1e-9, 6)) for on, off in zip(planned.on_ns, planned.off_ns)
    ]
    points = [(-1e3, LOW_W)] + [p for on, off in edges_s for p in ((on, HIGH_W), (off, LOW_W))]
    sched = Schedule(
        np.array([t0_ns + round(on * 1e9) for on, _ in edges_s], np.int64),
        np.array([t0_ns + round(off * 1e9) for _, off in edges_s], np.int64),
    )
    return Steps(tuple(points)), sched
