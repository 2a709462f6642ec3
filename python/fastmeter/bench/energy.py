"""Energy of a benchmark run: the measured span, and each request's share of it.

Every figure comes from one curve, the Meter's fused knot curve (`attribution.total_curve`, through
`Meter.cumulative_at`), and every instant stays int64 CLOCK_MONOTONIC ns: after ~104 days of uptime float64 can no
longer hold a nanosecond timestamp exactly."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fastmeter.adapters.base import RequestRecord
from fastmeter.attribution import Attribution, BoundedCurve, attribute, bounded_total_curve
from fastmeter.calibrate.result import field_delay_ns
from fastmeter.meter import Meter

# Cumulative joules (each physical quantity once) at each int64 ns instant, with the bound of their error.
Curve = Callable[[np.ndarray], BoundedCurve]


def counted_channels(m: Meter) -> list[str]:
    return [c.name for c in m.channels if c.in_total]


def channel_delays_ns(m: Meter, calibration: dict[str, Any] | None) -> dict[str, int]:
    """Measured lag of each GPU's energy counter (`fastmeter calibrate`), by channel name; GPUs are matched by UUID,
    the last word of the channel's device."""
    if not calibration:
        return {}
    out = {}
    for c in m.channels:
        if c.domain == "gpu":
            delay = field_delay_ns(calibration, c.device.split()[-1], "energy_counter")
            if delay:
                out[c.name] = delay
    return out


def meter_curve(m: Meter, delays_ns: dict[str, int] | None = None) -> Curve:
    return lambda t_ns: bounded_total_curve(m, t_ns, delays_ns=delays_ns)


def span_energy_by_channel(m: Meter, span_ns: tuple[int, int], delays_ns: dict[str, int]) -> dict[str, float]:
    """Joules per channel over the span, on the same (delay-corrected) curve the attribution uses."""
    out = {}
    for name in m.channel_names:
        d = delays_ns.get(name, 0)
        e = m.cumulative_at(np.array([span_ns[0] + d, span_ns[1] + d], dtype=np.int64))[name]
        out[name] = float(e[1] - e[0])
    return out


def attributable(records: Sequence[RequestRecord]) -> list[RequestRecord]:
    """Requests that reached the server: they have a send and an end instant."""
    return [r for r in records if r.send_ns is not None and r.end_ns is not None]


def attribute_requests(
    curve: Curve,
    records: Sequence[RequestRecord],
    span_ns: tuple[int, int],
    method: str,
    idle_power_w: float | None,
    update_period_s: float,
    knots_ns: np.ndarray | None = None,
) -> tuple[Attribution, dict[str, Any]]:
    """Split the span's energy among `records` (all attributable) on `curve`, evaluated at every event instant:
    span edges, request starts, first tokens, ends and chunk arrivals (all int64 ns, clipped to the span).

    Each request's `uncertainty_j` bounds its attribution error through the curve's bound at those instants; where
    that bound is unknown the update-period heuristic serves. The second value says which, for run.json's
    `attribution` (`uncertainty_info`). `method="activity"` also needs the sensor's update instants (`knots_ns`,
    `activity_energy.update_instants_ns`); the second value then carries the fit (`activity_fit`)."""
    lo, hi = (int(t) for t in span_ns)
    starts = np.clip(np.array([r.send_ns for r in records], dtype=np.int64), lo, hi)
    ends = np.clip(np.array([r.end_ns for r in records], dtype=np.int64), lo, hi)
    has_first = np.array([r.first_token_ns is not None for r in records], dtype=bool)
    first = np.clip(np.array([r.first_token_ns or 0 for r in records], dtype=np.int64), lo, hi)
    offsets = np.zeros(len(records) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r.chunk_t_ns) for r in records])
    chunk_t = np.clip(np.array([t for r in records for t in r.chunk_t_ns], dtype=np.int64), lo, hi)
    chunk_k = np.array([k for r in records for k in r.chunk_tokens], dtype=np.int64)
    # sort + mask: np.unique is far slower on large int64 arrays.
    events = np.sort(np.concatenate([np.array([lo, hi], dtype=np.int64), starts, ends, chunk_t]))
    events = events[np.r_[True, events[1:] != events[:-1]]]
    if method == "activity":
        from fastmeter.bench.activity_energy import attribute_by_activity

        arrays = {"starts": starts, "ends": ends, "first": np.ma.masked_array(first, mask=~has_first)}
        arrays.update(offsets=offsets, chunk_t=chunk_t, chunk_k=chunk_k)
        knots = np.zeros(0, dtype=np.int64) if knots_ns is None else knots_ns
        result, points = attribute_by_activity(curve, records, events, knots, arrays, idle_power_w, update_period_s)
        return result.attribution, {**uncertainty_info(result.attribution, points), "activity_fit": result.fit}
    points = curve(events)
    a = attribute(
        events,
        points.energy_j,
        starts,
        ends,
        np.ma.masked_array(first, mask=~has_first),
        chunk_offsets=offsets,
        chunk_t_ns=chunk_t,
        chunk_tokens=chunk_k,
        method=method,
        update_period_s=update_period_s,
        idle_power_w=idle_power_w,
        bound_j=points.bound_j,
    )
    return a, uncertainty_info(a, points)


def uncertainty_info(a: Attribution, points: BoundedCurve) -> dict[str, Any]:
    """run.json's account of what the requests' `uncertainty_j` is: "bound" (rigorous at every cut instant) or
    "heuristic", with how many instants lacked a bound and which channels' bounds were unknown there."""
    info: dict[str, Any] = {"uncertainty": a.uncertainty, "uncertainty_heuristic_points": a.heuristic_points}
    if a.heuristic_points:
        info["uncertainty_unbounded_channels"] = points.unbounded_points
        info["uncertainty_reason"] = (
            f"no error bound at {a.heuristic_points} of {len(points.energy_j)} cut instants (a counted channel "
            "without an energy counter, or outside its record): there uncertainty_j uses the update-period "
            "estimate, which is not a rigorous bound, and is NaN when no update period is known"
        )
    return info
