"""`attribution = "activity"` in a benchmark run: the sensor's update instants from the Meter's record, the curve
at those and at every event instant, and `fastmeter.activity` on them (docs/attribution.md, "Activity")."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fastmeter.activity import ActivityAttribution, attribute_activity
from fastmeter.errors import SpanError
from fastmeter.io.read import open_trace
from fastmeter.meter import Meter


def update_instants_ns(
    meter: Meter, span_ns: tuple[int, int], delays_ns: dict[str, int], trace_path: Path | None = None
) -> np.ndarray:
    """The instants inside the span at which a counted channel's cumulative energy changed (on the same clock as
    the curve: a channel whose counter lags by d changed at t - d). Streamed from the run's own trace file when
    given (complete: the Meter keeps raw samples only for its last keep_samples_s), else from the Meter's raw
    samples; empty when neither has them."""
    counted = {c.name for c in meter.channels if c.in_total}
    batches: Iterable[Any]
    if trace_path is not None and trace_path.is_file():
        batches = open_trace(trace_path).batches()
    else:
        try:
            batches = [meter.samples()]
        except SpanError:
            return np.zeros(0, dtype=np.int64)
    last: dict[str, float] = {}
    out = []
    for batch in batches:
        channel = np.asarray(batch.column("channel").cast(pa.string()).to_numpy(zero_copy_only=False))
        t_all = batch.column("t_ns").to_numpy().astype(np.int64, copy=False)
        e_all = batch.column("energy_j").to_numpy(zero_copy_only=False)
        for name in counted:
            mine = channel == name
            t, e = t_all[mine], e_all[mine]
            if not len(e):
                continue
            prev = np.r_[last.get(name, e[0]), e[:-1]]  # a batch continues the previous one's last value
            changed = (e != prev) & ~np.isnan(e) & ~np.isnan(prev)
            out.append(t[changed] - delays_ns.get(name, 0))
            last[name] = e[-1]
    t = np.unique(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)
    return t[(t > span_ns[0]) & (t < span_ns[1])]


def attribute_by_activity(
    curve: Any,
    prompt_tokens: np.ndarray,
    events: np.ndarray,
    knots_ns: np.ndarray,
    arrays: dict[str, Any],
    idle_power_w: float | None,
    update_period_s: float,
) -> tuple[ActivityAttribution, Any]:
    """The activity attribution of the requests in `arrays` (with their `prompt_tokens`) on `curve` evaluated at the
    event instants and the sensor's update instants; returns it and the curve points (for the uncertainty account)."""
    cuts = np.union1d(events, knots_ns)
    points = curve(cuts)
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
        prompt_tokens=prompt_tokens,
        idle_power_w=idle_power_w,
        bound_j=points.bound_j,
        update_period_s=update_period_s,
    )
    return result, points
