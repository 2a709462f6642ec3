"""Pure-Python twin of csrc/fastmeter/bound.{h,cpp}, written from the specification (docs/methodology.md, "Error
bound"), not ported from the C++.

Specification. A counter channel's samples give change points: a value E_j first read at poll hi_j that the previous
counter read (at lo_j) did not show, so the true cumulative energy equals E_j at an unknown instant r_j in
(lo_j, hi_j]; the first reading is a change point with lo = -inf. Power satisfies 0 <= P <= P_max, where P_max is
POWER_BOUND_MARGIN x the largest power seen (finite power readings, and for consecutive change points i, j with a
finite lo_i the mean (E_j - E_i) / (hi_j - lo_i)); +inf before anything was seen. At an instant t, with
  a = the newest change point with hi <= t   (certainly at or before t),
  c = a change point with lo < t < hi        (on either side of t; at most one),
  b = the oldest change point with lo >= t   (certainly after t),
the true E(t) lies in
  [E_a, E_a + P_max (t - lo_a)]  n  [E_b - P_max (hi_b - t), E_b]  n  [E_c - P_max (hi_c - t), E_c + P_max (t - lo_c)]
(each part only where that point exists; a product with a zero time is 0), widened on both sides by one counter tick
plus 1e-9 relative for float summation. A span's energy E(t1) - E(t0) lies in
  [max(lo(t1) - hi(t0), 0), min(hi(t1) - lo(t0), P_max (t1 - t0))],
and a value's error bound is its largest distance to an end of its interval (NaN if an end is infinite).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fastmeter.validity import POWER_BOUND_MARGIN

INF = math.inf


def _energy_over(power_w: float, seconds_ns: int) -> float:
    return 0.0 if seconds_ns <= 0 else power_w * seconds_ns * 1e-9


def change_points(
    t_ns: Sequence[int], energy_j: Sequence[float], counter: Sequence[bool], changed: Sequence[bool]
) -> list[tuple[float, int, float]]:
    """[(lo_ns or -inf, hi_ns, energy_j)] from a sample stream (failed samples already left out)."""
    points: list[tuple[float, int, float]] = []
    previous_read: int | None = None
    for t, e, is_counter, is_changed in zip(t_ns, energy_j, counter, changed):
        if not is_counter:
            continue
        if previous_read is None:
            points.append((-INF, int(t), float(e)))
        elif is_changed:
            points.append((previous_read, int(t), float(e)))
        previous_read = int(t)
    return points


def power_limit_w(points: list[tuple[float, int, float]], power_w: Sequence[float]) -> float:
    seen = [p for p in power_w if math.isfinite(p)]
    for (lo_i, _, e_i), (_, hi_j, e_j) in zip(points, points[1:]):
        if math.isfinite(lo_i) and hi_j > lo_i:
            seen.append((e_j - e_i) / ((hi_j - lo_i) * 1e-9))
    peak = max(seen, default=0.0)
    return POWER_BOUND_MARGIN * peak if peak > 0 else INF


def range_at(points: list[tuple[float, int, float]], p_max: float, unit_j: float, t: int) -> tuple[float, float]:
    a = b = c = None
    for point in points:
        lo, hi, _ = point
        if hi <= t and (a is None or hi > a[1]):
            a = point
        elif lo >= t and (b is None or lo < b[0]):
            b = point
        elif lo < t < hi:
            c = point

    def after(point: tuple[float, int, float]) -> float:  # most energy from the point's instant to t
        return INF if point[0] == -INF else _energy_over(p_max, int(t - point[0]))

    def before(point: tuple[float, int, float]) -> float:  # most energy from t to the point's instant
        return _energy_over(p_max, point[1] - t)

    lower, upper = -INF, INF
    if a is not None:
        lower, upper = max(lower, a[2]), min(upper, a[2] + after(a))
    if b is not None:
        lower, upper = max(lower, b[2] - before(b)), min(upper, b[2])
    if c is not None:
        lower, upper = max(lower, c[2] - before(c)), min(upper, c[2] + after(c))
    widen = unit_j + 1e-9 * max(abs(x) for x in (lower, upper, 0.0) if math.isfinite(x))
    return lower - widen, upper + widen


def energy_range(
    t_ns: np.ndarray,
    energy_j: np.ndarray,
    power_w: np.ndarray,
    counter: np.ndarray,
    changed: np.ndarray,
    unit_j: float,
    query_t_ns: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Same signature as fastmeter._core.energy_range: (lo_j, hi_j) per query instant, and P_max."""
    points = change_points(t_ns.tolist(), energy_j.tolist(), counter.tolist(), changed.tolist())
    p_max = power_limit_w(points, power_w.tolist())
    ranges = [range_at(points, p_max, unit_j, int(t)) for t in query_t_ns]
    return np.array([r[0] for r in ranges]), np.array([r[1] for r in ranges]), p_max


def span_range(
    lo0_j: np.ndarray,
    hi0_j: np.ndarray,
    lo1_j: np.ndarray,
    hi1_j: np.ndarray,
    pmax_w: float,
    t0_ns: np.ndarray,
    t1_ns: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Same signature as fastmeter._core.span_range."""
    lo = np.maximum(lo1_j - hi0_j, 0.0)
    reach = np.array(
        [_energy_over(pmax_w, int(b - a)) if math.isfinite(pmax_w) or b <= a else INF for a, b in zip(t0_ns, t1_ns)]
    )
    hi = np.minimum(hi1_j - lo0_j, reach)
    return lo, hi


def bound_of(value: np.ndarray, lo_j: np.ndarray, hi_j: np.ndarray) -> np.ndarray:
    """Largest distance from each value to an end of its interval; NaN where an end is infinite."""
    b = np.maximum(value - lo_j, hi_j - value)
    return np.where(np.isfinite(lo_j) & np.isfinite(hi_j) & np.isfinite(value), b, math.nan)
