"""Load schedules for calibration: when the GPU load is on, on CLOCK_MONOTONIC ns.

A strictly periodic load cannot tell a window w from w + period (the mean over one extra full period is a
constant), so calibration plays a *jittered* square wave: every on and off duration is drawn around
duty * period and (1 - duty) * period. The plain square wave stays for the emulator's `power square`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastmeter.errors import CalibrationError


@dataclass(frozen=True)
class Schedule:
    """The load's on-intervals [on_ns[i], off_ns[i]) on CLOCK_MONOTONIC, sorted and disjoint."""

    on_ns: np.ndarray
    off_ns: np.ndarray

    def __post_init__(self) -> None:
        on, off = np.asarray(self.on_ns, np.int64), np.asarray(self.off_ns, np.int64)
        if on.shape != off.shape or on.ndim != 1 or on.size == 0:
            raise CalibrationError("a load schedule needs one or more (on, off) pairs")
        if np.any(off <= on) or np.any(on[1:] < off[:-1]):
            raise CalibrationError("load schedule intervals must be increasing and disjoint")
        object.__setattr__(self, "on_ns", on)
        object.__setattr__(self, "off_ns", off)

    def on_time_s(self, t_ns: np.ndarray) -> np.ndarray:
        """Seconds the load was on before each instant: piecewise linear, so one np.interp evaluates it."""
        edges = np.stack([self.on_ns, self.off_ns], axis=1).ravel()
        lengths = (self.off_ns - self.on_ns) * 1e-9
        cum = np.stack([np.concatenate([[0.0], np.cumsum(lengths)[:-1]]), np.cumsum(lengths)], axis=1).ravel()
        x = (edges - edges[0]).astype(np.float64)
        return np.interp(np.asarray(t_ns, np.float64) - edges[0], x, cum)

    def is_on(self, t_ns: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.on_ns, t_ns, side="right") - 1
        return (i >= 0) & (t_ns < self.off_ns[np.maximum(i, 0)])


def square_schedule(t0_ns: int, period_s: float, duty: float, start_ns: int, end_ns: int) -> Schedule:
    """On for duty * period_s at the start of every period from t0_ns (the emulator's `power square` wave)."""
    if not (period_s > 0 and 0 < duty < 1):
        raise CalibrationError("a square load needs period_s > 0 and 0 < duty < 1")
    period_ns = round(period_s * 1e9)
    k0 = (start_ns - t0_ns) // period_ns - 1
    k1 = (end_ns - t0_ns) // period_ns + 1
    on = t0_ns + np.arange(k0, k1 + 1, dtype=np.int64) * period_ns
    return Schedule(on, on + round(duty * period_s * 1e9))


def jittered_square(
    period_ms: float, duty: float, duration_s: float, seed: int = 0, jitter: float = 0.5
) -> list[tuple[float, float]]:
    """[(on_s, off_s) durations] covering duration_s: each drawn uniformly within +-jitter of its nominal."""
    if not (period_ms > 0 and 0 < duty < 1 and duration_s > 0 and 0 <= jitter < 1):
        raise CalibrationError("a square load needs period_ms > 0, 0 < duty < 1 and duration_s > 0")
    rng = np.random.default_rng(seed)
    out, total_s = [], 0.0
    while total_s < duration_s:
        on_s, off_s = (period_ms * 1e-3 * f * rng.uniform(1 - jitter, 1 + jitter) for f in (duty, 1 - duty))
        out.append((on_s, off_s))
        total_s += on_s + off_s
    return out


def schedule_from_durations(start_ns: int, durations: list[tuple[float, float]]) -> Schedule:
    """The planned schedule of a load that starts its first on-phase at start_ns."""
    on, off, t = [], [], float(start_ns)
    for on_s, off_s in durations:
        on.append(round(t))
        off.append(round(t + on_s * 1e9))
        t += (on_s + off_s) * 1e9
    return Schedule(np.array(on, np.int64), np.array(off, np.int64))
