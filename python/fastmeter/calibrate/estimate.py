"""Sensor calibration estimator: update period, averaging window and delay of each NVML field under a known load.

Model (docs/calibration.md): a field publishes a new value at instants r_k = phase + k * P (its update period).
The value published at r_k is the mean of the true power over [r_k - delay - window, r_k - delay]. True power is
a two-level square wave, low_w + (high_w - low_w) * u(t), where u is the known load schedule (1 while the load
runs). For the energy counter the "reading" is the power its increments imply, (C_k - C_{k-1}) / (r_k - r_{k-1}):
a true integral has window = P, a counter built from part-time power samples has a shorter one.

Everything is pure numpy on CLOCK_MONOTONIC ns, so the same code calibrates a real GPU and the NVML emulator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fastmeter.calibrate.schedule import Schedule
from fastmeter.errors import CalibrationError

FIELD_IDS = {"energy_counter": 83, "instant_power": 186, "average_power": 185}
MIN_UPDATES = 8


@dataclass(frozen=True)
class Updates:
    """Where a field publishes: r_k = phase_ns + k * period_ns. `resolved` is False when no regular grid shows
    (the field changed at nearly every poll, or only at load edges): its values are then taken as fresh at every
    poll and period_ns is the polling interval, an upper bound at best."""

    period_ns: float
    phase_ns: float
    n_changes: int
    resolved: bool


def find_updates(t_ns: np.ndarray, values: np.ndarray) -> Updates:
    """Update grid from change points: a change between polls i-1 and i was published in (t[i-1], t[i]], so the
    midpoint is an unbiased estimate; a line through the midpoints (integer k from their spacing) gives P.
    Changes seen across a polling stall are dated loosely and left out, so one stall cannot shift every k."""
    ok = np.isfinite(values)
    t, v = np.asarray(t_ns, np.float64)[ok], np.asarray(values)[ok]
    ch = np.nonzero(v[1:] != v[:-1])[0] + 1
    if ch.size < MIN_UPDATES:
        raise CalibrationError(
            f"the field changed only {ch.size} times; run longer (--duration-s) or check that the load runs"
        )
    gap = float(np.median(np.diff(t)))
    d_all = np.diff((t[ch - 1] + t[ch]) / 2)
    p0 = float(np.median(d_all[d_all <= 1.5 * np.quantile(d_all, 0.05)]))
    sharp = ch[(t[ch] - t[ch - 1]) <= max(3 * gap, 0.05 * p0)]
    mid = (t[sharp - 1] + t[sharp]) / 2
    if p0 >= 2.5 * gap and mid.size >= MIN_UPDATES:
        k = np.concatenate([[0], np.cumsum(np.maximum(np.rint(np.diff(mid) / p0), 1))])
        slope, intercept = np.polyfit(k, mid, 1)
        k = np.rint((mid - intercept) / slope)  # re-index against the fitted line: no drift from p0's error
        slope, intercept = np.polyfit(k, mid, 1)
        if np.quantile(np.abs(mid - (intercept + slope * k)), 0.9) < 0.25 * slope:
            return Updates(float(slope), float(intercept), int(ch.size), True)
    return Updates(gap, float(t[0]), int(ch.size), False)


def per_update_readings(
    t_ns: np.ndarray, values: np.ndarray, up: Updates, max_points: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """(publish instants, values): one poll per update, the one nearest the middle of its interval, so it holds
    the value published at r_k; for an unresolved field, the polls themselves (thinned to max_points)."""
    ok = np.isfinite(values)
    t, v = np.asarray(t_ns, np.float64)[ok], np.asarray(values, np.float64)[ok]
    if not up.resolved:
        step = max(1, t.size // max_points)
        return t[::step], v[::step]
    k_first = np.ceil((t[0] - up.phase_ns) / up.period_ns)
    k_last = np.floor((t[-1] - up.phase_ns) / up.period_ns) - 1
    r = up.phase_ns + np.arange(k_first, k_last + 1) * up.period_ns
    i = np.clip(np.searchsorted(t, r + up.period_ns / 2), 1, t.size - 1)
    i = np.where(np.abs(t[i - 1] - (r + up.period_ns / 2)) < np.abs(t[i] - (r + up.period_ns / 2)), i - 1, i)
    inside = np.abs(t[i] - (r + up.period_ns / 2)) < 0.4 * up.period_ns  # a stall may leave an update unpolled
    return r[inside], v[i][inside]


@dataclass(frozen=True)
class Fit:
    window_ms: float
    delay_ms: float
    low_w: float
    high_w: float
    rms_residual_w: float


def _sse_grid(
    r_ns: np.ndarray, y: np.ndarray, sched: Schedule, windows_ms: np.ndarray, delay_ms: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For one delay and many windows: residual sum of squares of y ~ low + (high - low) * m, with the levels
    solved by least squares per window (closed form), plus the fitted slope and intercept."""
    a = r_ns - delay_ms * 1e6
    fa = sched.on_time_s(a)
    w = windows_ms[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(
            w > 0,
            (fa[None, :] - sched.on_time_s(a[None, :] - w * 1e6)) / (w * 1e-3),
            sched.is_on(a)[None, :].astype(np.float64),
        )
    mc = m - m.mean(axis=1, keepdims=True)
    yc = y - y.mean()
    sxx = (mc * mc).sum(axis=1)
    sxy = (mc * yc).sum(axis=1)
    syy = float((yc * yc).sum())
    usable = (sxx > 1e-12 * m.shape[1]) & (sxy > 0)  # a flat model or an inverted one explains nothing
    slope = np.where(usable, sxy / np.where(usable, sxx, 1.0), 0.0)
    sse = np.where(usable, syy - slope * sxy, syy)
    intercept = y.mean() - slope * m.mean(axis=1)
    return sse, slope, intercept


def fit_window_delay(
    r_ns: np.ndarray,
    y_w: np.ndarray,
    sched: Schedule,
    max_window_ms: float,
    delay_range_ms: tuple[float, float] = (-20.0, 250.0),
) -> Fit:
    """Grid search (2 ms, then 0.1 ms around the best) for the window and delay minimizing squared error."""
    r, y = np.asarray(r_ns, np.float64), np.asarray(y_w, np.float64)
    if r.size < MIN_UPDATES:
        raise CalibrationError(f"only {r.size} readings to fit; run longer (--duration-s)")
    best = (np.inf, 0.0, 0.0, 0.0, 0.0)
    windows = np.arange(0.0, max_window_ms + 1e-9, 2.0)
    delays = np.arange(delay_range_ms[0], delay_range_ms[1] + 1e-9, 2.0)
    for step, span in ((2.0, None), (0.1, 2.5)):
        if span is not None:
            _, w0, d0, _, _ = best
            windows = np.arange(max(0.0, w0 - span), min(max_window_ms, w0 + span) + 1e-9, step)
            delays = np.arange(d0 - span, d0 + span + 1e-9, step)
        for d in delays:
            sse, slope, intercept = _sse_grid(r, y, sched, windows, float(d))
            j = int(np.argmin(sse))
            if sse[j] < best[0]:
                best = (float(sse[j]), float(windows[j]), float(d), float(intercept[j]), float(slope[j]))
    sse, w, d, low, slope = best
    if slope <= 0:
        raise CalibrationError("the readings do not follow the load; check that the load reaches this GPU")
    return Fit(w, d, low, low + slope, float(np.sqrt(max(sse, 0.0) / r.size)))


@dataclass(frozen=True)
class FieldCalibration:
    field: str
    field_id: int
    update_period_ms: float
    update_resolved: bool  # False: the field changed at (nearly) every poll; the period is at most this
    averaging_window_ms: float
    delay_ms: float
    low_w: float
    high_w: float
    rms_residual_w: float
    n_readings: int


def calibrate_field(
    name: str, t_ns: np.ndarray, values: np.ndarray, sched: Schedule, max_window_ms: float = 1500.0
) -> FieldCalibration:
    """values: watts for the power fields, cumulative millijoules for the energy counter."""
    up = find_updates(t_ns, values)
    r, v = per_update_readings(t_ns, values, up)
    if name == "energy_counter":  # implied power between consecutive readings, published at the later one
        dr = np.diff(r)
        y = np.diff(v) * 1e-3 / (dr * 1e-9)
        adjacent = dr < 1.5 * np.median(dr)  # one window length for all: skip pairs a polling stall split
        r, y = r[1:][adjacent], y[adjacent]
        max_window_ms = min(max_window_ms, 4.0 * float(np.max(np.diff(r))) * 1e-6 + 10.0)
    else:
        y = v
    fit = fit_window_delay(r, y, sched, max_window_ms)
    return FieldCalibration(
        name,
        FIELD_IDS[name],
        up.period_ns * 1e-6,
        up.resolved,
        fit.window_ms,
        fit.delay_ms,
        fit.low_w,
        fit.high_w,
        fit.rms_residual_w,
        int(r.size),
    )


def counter_vs_power_pct(t_ns: np.ndarray, counter_mj: np.ndarray, instant_w: np.ndarray) -> float:
    """(integrated instant power - counter energy) / counter energy, in %, over the span between the first and
    the last counter change; instant power holds its polled value until the next poll."""
    ok = np.isfinite(counter_mj) & np.isfinite(instant_w)
    t, c, p = np.asarray(t_ns, np.float64)[ok], np.asarray(counter_mj)[ok], np.asarray(instant_w)[ok]
    ch = np.nonzero(c[1:] != c[:-1])[0] + 1
    if ch.size < 2:
        raise CalibrationError("the energy counter did not advance; run longer (--duration-s)")
    i0, i1 = int(ch[0]), int(ch[-1])
    energy_counter_j = (c[i1] - c[i0]) * 1e-3
    energy_power_j = float(np.sum(p[i0:i1] * np.diff(t[i0 : i1 + 1]))) * 1e-9
    return 100.0 * (energy_power_j - energy_counter_j) / energy_counter_j


def calibrate_gpu(
    t_ns: np.ndarray, counter_mj: np.ndarray, instant_w: np.ndarray, average_w: np.ndarray, sched: Schedule
) -> dict[str, object]:
    """All fields a GPU supports (an all-NaN column is a field it lacks) plus the counter/power agreement."""
    columns = {"energy_counter": counter_mj, "instant_power": instant_w, "average_power": average_w}
    fields = {
        name: asdict(calibrate_field(name, t_ns, col, sched)) for name, col in columns.items() if np.isfinite(col).any()
    }
    agreement = None
    if "energy_counter" in fields and "instant_power" in fields:
        agreement = counter_vs_power_pct(t_ns, counter_mj, instant_w)
    return {"fields": fields, "counter_vs_power_pct": agreement}
