"""`attribution = "activity"` in a benchmark run: the sensor's update instants from the Meter's record, the curve
at those and at every event instant, and `fastmeter.activity` on them (docs/attribution.md, "Activity")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow.compute as pc

from fastmeter.activity import ActivityAttribution, attribute_activity
from fastmeter.adapters.base import RequestRecord
from fastmeter.errors import SpanError
from fastmeter.meter import Meter


def update_instants_ns(meter: Meter, span_ns: tuple[int, int], delays_ns: dict[str, int]) -> np.ndarray:
    """The instants inside the span at which a counted channel's cumulative energy changed (on the same clock as
    the curve: a channel whose counter lags by d changed at t - d). Empty when the record no longer holds them."""
    try:
        samples = meter.samples()
    except SpanError:
        return np.zeros(0, dtype=np.int64)
    out = []
    for c in meter.channels:
        if not c.in_total:
            continue
        mine = samples.filter(pc.equal(samples.column("channel").cast("string"), c.name))
        t = mine.column("t_ns").to_numpy().astype(np.int64, copy=False)
        e = mine.column("energy_j").to_numpy(zero_copy_only=False)
        changed = np.r_[False, np.diff(e) != 0] & ~np.isnan(e)
        out.append(t[changed] - delays_ns.get(c.name, 0))
    t = np.unique(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)
    return t[(t > span_ns[0]) & (t < span_ns[1])]


def attribute_by_activity(
    curve: Any,
    records: Sequence[RequestRecord],
    events: np.ndarray,
    knots_ns: np.ndarray,
    arrays: dict[str, Any],
    idle_power_w: float | None,
    update_period_s: float,
) -> tuple[ActivityAttribution, Any]:
    """The activity attribution of `records` on `curve` evaluated at the event instants and the sensor's update
    instants; returns it and the curve points (for the uncertainty account)."""
    cuts = np.union1d(events, knots_ns)
    points = curve(cuts)
    prompt = np.array([r.prompt_tokens or 0 for r in records], dtype=np.int64)
    result = attribute_activity(
        cuts,
        points.energy_j,
        knots_ns,
        arrays["starts"],
        arrays["ends"],
        arrays["first"],
        chunk_offsets=arrays["offsets"],
        chunk_t_ns=arrays["chunk_t"],
        chunk_tokens=arrays["chunk_k"],
        prompt_tokens=prompt,
        idle_power_w=idle_power_w,
        bound_j=points.bound_j,
        update_period_s=update_period_s,
    )
    return result, points
