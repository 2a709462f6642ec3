"""What the server itself counted during the measured phase: the increase of its Prometheus counters between the
baseline scrape taken right after warm-up and the first scrape after the last measured request, so warm-up
requests are never in them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastmeter.adapters.prometheus import MetricRow

# Monotone series: counters, and the running count and sum of histograms and summaries.
COUNTER_SUFFIXES = ("_total", "_count", "_sum")


def counter_deltas(rows: Sequence[MetricRow], span_ns: tuple[int, int]) -> dict[str, Any]:
    """{"baseline_t_ns", "end_t_ns", "deltas": {name: increase summed over label sets}}; with no scrape at or
    before the span's start or none at or after its end, the deltas are unknown: {"deltas": None, "reason"}."""
    times = sorted({r.t_ns for r in rows})
    if not times:
        return {
            "baseline_t_ns": None,
            "end_t_ns": None,
            "deltas": None,
            "reason": "no /metrics scrape recorded ([metrics].enabled = false, or every scrape failed)",
        }
    before = [t for t in times if t <= span_ns[0]]
    after = [t for t in times if t >= span_ns[1]]
    if not before or not after:
        missing = "before the measured phase (after warm-up)" if not before else "after the measured phase"
        return {
            "baseline_t_ns": None,
            "end_t_ns": None,
            "deltas": None,
            "reason": f"no /metrics scrape {missing}: server-side deltas are unknown",
        }
    t0, t1 = before[-1], after[0]
    deltas: dict[str, float] = {}
    for r in rows:
        if r.t_ns in (t0, t1) and r.name.endswith(COUNTER_SUFFIXES):
            deltas[r.name] = deltas.get(r.name, 0.0) + (r.value if r.t_ns == t1 else -r.value)
    return {"baseline_t_ns": t0, "end_t_ns": t1, "deltas": dict(sorted(deltas.items()))}
