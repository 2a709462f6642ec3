"""Energy of a benchmark run: the measured span, and each request's share of it.

Every figure comes from one curve, the Meter's fused knot curve (`attribution.total_curve`, through
`Meter.cumulative_at`), and every instant stays int64 CLOCK_MONOTONIC ns: after ~104 days of uptime float64 can no
longer hold a nanosecond timestamp exactly."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from fastmeter.adapters.base import RequestRecord
from fastmeter.attribution import Attribution, BoundedCurve, bounded_total_curve
from fastmeter.attribution_stream import RESULT_COLUMNS, RequestBatch, StreamedAttribution
from fastmeter.calibrate.result import field_delay_ns
from fastmeter.meter import Meter

# Requests per batch of the streamed attribution: memory per batch ~100 bytes a request plus its chunks.
REQUEST_BATCH = 65_536
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
    *,
    batch_requests: int = REQUEST_BATCH,
) -> tuple[Attribution, dict[str, Any]]:
    """Split the span's energy among `records` (all attributable) on `curve`, evaluated at every event instant:
    span edges, request starts, first tokens, ends and chunk arrivals (all int64 ns, clipped to the span).

    time-share and token-weighted use the streamed sweep (`attribution_stream`, identical to `attribute()`):
    requests go to it in batches in order of start and the curve is evaluated batch by batch, so its memory stays
    bounded by the batch and the requests in flight. Each request's `uncertainty_j` bounds its attribution error
    through the curve's bound at those instants; where that bound is unknown the update-period heuristic serves. The
    second value says which, for run.json's `attribution` (`uncertainty_info`). `method="activity"` (in memory) also
    needs the sensor's update instants (`knots_ns`, `activity_energy.update_instants_ns`); the second value then
    carries the fit (`activity_fit`)."""
    if method == "activity":
        (batch,) = _request_batches(records, max(len(records), 1))
        prompt = np.array([r.prompt_tokens or 0 for r in records], dtype=np.int64)
        return attribute_by_activity_in_memory(curve, batch, prompt, span_ns, idle_power_w, update_period_s, knots_ns)
    starts = np.array([r.send_ns for r in records], dtype=np.int64)
    order = np.argsort(starts, kind="stable")
    batches = _request_batches([records[i] for i in order], batch_requests)
    return attribute_in_start_order(curve, batches, order, span_ns, method, idle_power_w, update_period_s)


def attribute_in_start_order(
    curve: Curve,
    batches: Iterable[RequestBatch],
    order: np.ndarray,
    span_ns: tuple[int, int],
    method: str,
    idle_power_w: float | None,
    update_period_s: float,
) -> tuple[Attribution, dict[str, Any]]:
    """The streamed sweep over request `batches` that come in order of start: request j of the stream is request
    `order[j]` of the result (an `Attribution` of len(order) requests, with `attribute_requests`' second value)."""
    s = StreamedAttribution(
        curve,
        batches,
        method=method,
        update_period_s=update_period_s,
        idle_power_w=idle_power_w,
        span_ns=(int(span_ns[0]), int(span_ns[1])),
    )
    out = {k: np.full(len(order), np.nan) for k in RESULT_COLUMNS}
    for batch in s:
        rows = order[batch.first_index : batch.first_index + len(batch.energy_j)]
        for k in RESULT_COLUMNS:
            out[k][rows] = getattr(batch, k)
    t = s.totals
    a = t.attribution(out)
    return a, uncertainty_info(a, t.curve_points, t.unbounded_points)


def attribute_by_activity_in_memory(
    curve: Curve,
    batch: RequestBatch,
    prompt_tokens: np.ndarray,
    span_ns: tuple[int, int],
    idle_power_w: float | None,
    update_period_s: float,
    knots_ns: np.ndarray | None,
) -> tuple[Attribution, dict[str, Any]]:
    """`method="activity"` on all the requests at once (`batch`, any order; `prompt_tokens` aligned with it)."""
    lo, hi = (int(t) for t in span_ns)
    starts = np.clip(np.asarray(batch.start_ns, dtype=np.int64), lo, hi)
    ends = np.clip(np.asarray(batch.end_ns, dtype=np.int64), lo, hi)
    first_ns = np.ma.asarray(batch.first_token_ns)
    has_first = ~np.ma.getmaskarray(first_ns)
    first = np.clip(first_ns.filled(0).astype(np.int64), lo, hi)
    offsets = np.asarray(batch.chunk_offsets, dtype=np.int64)
    chunk_t = np.clip(np.asarray(batch.chunk_t_ns, dtype=np.int64), lo, hi)
    chunk_k = np.asarray(batch.chunk_tokens, dtype=np.int64)
    # sort + mask: np.unique is far slower on large int64 arrays.
    events = np.sort(np.concatenate([np.array([lo, hi], dtype=np.int64), starts, ends, chunk_t]))
    events = events[np.r_[True, events[1:] != events[:-1]]]
    from fastmeter.bench.activity_energy import attribute_by_activity

    arrays = {"starts": starts, "ends": ends, "first": np.ma.masked_array(first, mask=~has_first)}
    arrays.update(offsets=offsets, chunk_t=chunk_t, chunk_k=chunk_k)
    knots = np.zeros(0, dtype=np.int64) if knots_ns is None else knots_ns
    result, points = attribute_by_activity(curve, prompt_tokens, events, knots, arrays, idle_power_w, update_period_s)
    info = uncertainty_info(result.attribution, len(points.energy_j), points.unbounded_points)
    return result.attribution, {**info, "activity_fit": result.fit}


def _request_batches(records: Sequence[RequestRecord], size: int) -> Iterator[RequestBatch]:
    for lo in range(0, len(records), size):
        part = records[lo : lo + size]
        offsets = np.zeros(len(part) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(r.chunk_t_ns) for r in part])
        first = np.array([r.first_token_ns or 0 for r in part], dtype=np.int64)
        yield RequestBatch(
            np.array([r.send_ns for r in part], dtype=np.int64),
            np.array([r.end_ns for r in part], dtype=np.int64),
            np.ma.masked_array(first, mask=[r.first_token_ns is None for r in part]),
            offsets,
            np.array([t for r in part for t in r.chunk_t_ns], dtype=np.int64),
            np.array([k for r in part for k in r.chunk_tokens], dtype=np.int64),
        )


def uncertainty_info(a: Attribution, n_points: int, unbounded_points: dict[str, int]) -> dict[str, Any]:
    """run.json's account of what the requests' `uncertainty_j` is: "bound" (rigorous at every cut instant) or
    "heuristic", with how many instants lacked a bound and which channels' bounds were unknown there."""
    info: dict[str, Any] = {"uncertainty": a.uncertainty, "uncertainty_heuristic_points": a.heuristic_points}
    if a.heuristic_points:
        info["uncertainty_unbounded_channels"] = unbounded_points
        info["uncertainty_reason"] = (
            f"no error bound at {a.heuristic_points} of {n_points} cut instants (a counted channel "
            "without an energy counter, or outside its record): there uncertainty_j uses the update-period "
            "estimate, which is not a rigorous bound, and is NaN when no update period is known"
        )
    return info
