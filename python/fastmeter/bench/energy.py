"""Energy of a benchmark run: the measured span, and each request's share of it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fastmeter.adapters.base import RequestRecord
from fastmeter.attribution import Attribution, attribute
from fastmeter.calibrate.result import field_delay_ns
from fastmeter.meter import Meter


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


def total_curve(m: Meter, t_ns: np.ndarray, delays_ns: dict[str, int] | None = None) -> np.ndarray:
    """Cumulative joules at each instant summed over counted channels (each physical quantity once). A channel
    whose counter lags reality by d (calibrated) is read at t + d: what it reported then happened at t."""
    delays_ns = delays_ns or {}
    total = np.zeros(len(t_ns))
    for name in counted_channels(m):
        c = m.cumulative_at(t_ns + delays_ns.get(name, 0))[name]
        if not np.all(np.isnan(c)):
            total += np.nan_to_num(c)
    # Each channel's curve is monotone; rounding in the sum must not make the total step backwards.
    return np.maximum.accumulate(total)


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
    m: Meter,
    records: Sequence[RequestRecord],
    span_ns: tuple[int, int],
    method: str,
    idle_power_w: float | None,
    delays_ns: dict[str, int] | None = None,
) -> Attribution:
    """Split the span's energy among `records` (all attributable) on the meter's interpolated curve, evaluated at
    every event instant: span edges, request starts, first tokens, ends and chunk arrivals."""
    starts = np.array([r.send_ns for r in records], dtype=np.int64)
    ends = np.array([r.end_ns for r in records], dtype=np.int64)
    first = np.array([math.nan if r.first_token_ns is None else r.first_token_ns for r in records], dtype=float)
    offsets = np.zeros(len(records) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r.chunk_t_ns) for r in records])
    chunk_t = np.array([t for r in records for t in r.chunk_t_ns], dtype=np.int64)
    chunk_k = np.array([k for r in records for k in r.chunk_tokens], dtype=np.int64)
    lo, hi = span_ns
    first = np.where(np.isnan(first), np.nan, np.clip(first, lo, hi))
    chunk_t = np.clip(chunk_t, lo, hi)
    # sort + mask: np.unique is far slower on large int64 arrays.
    events = np.sort(np.concatenate([np.array(span_ns, dtype=np.int64), starts, ends, chunk_t]))
    events = events[(events >= lo) & (events <= hi)]
    events = events[np.r_[True, events[1:] != events[:-1]]]
    periods = [p for p in m.stats()["update_period_s"].values() if not math.isnan(p)]
    return attribute(
        events,
        total_curve(m, events, delays_ns),
        np.clip(starts, lo, hi),
        np.clip(ends, lo, hi),
        first,
        chunk_offsets=offsets,
        chunk_t_ns=chunk_t,
        chunk_tokens=chunk_k,
        method=method,
        update_period_s=max(periods, default=0.0),
        idle_power_w=idle_power_w,
    )
