"""What a Prometheus scrape reads: the meter's counters, power, validity and sampler health, at scrape time.

Metric names follow Prometheus conventions (base units, `_total` for counters); docs/export.md lists them.
Each scrape reads the meter afresh (a custom collector, no background thread): a counter is the meter's own
cumulative joules, so it never goes backwards while the meter runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from fastmeter.validity import Validity, Verdict

PREFIX = "fastmeter"
# Power is the curve's average over the last second: long enough to span NVML's ~100 ms counter refreshes (so it is
# not 0 between two of them), short enough to follow load changes at a typical 15 s scrape interval.
POWER_WINDOW_S = 1.0


def _stat(stats: dict[str, Any], key: str) -> float:
    """A sampler statistic as a float; NaN (unknown) when the meter does not report it."""
    value = stats.get(key)
    return math.nan if value is None else float(value)


class MeterCollector:
    """A prometheus_client collector over a `Meter` or `ClusterMeter`. `judge()` gives the record's validity
    (`fastmeter.assess.meter_validity` for a Meter, `ClusterMeter.validity` for a cluster)."""

    def __init__(self, meter: Any, judge: Callable[[], Validity]) -> None:
        self.meter = meter
        self.judge = judge

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        m = self.meter
        labels = ["channel", "domain"]
        energy = CounterMetricFamily(
            f"{PREFIX}_energy_joules", "Energy since the meter started, per channel (J)", labels=labels
        )
        power = GaugeMetricFamily(
            f"{PREFIX}_power_watts", f"Average power over the last {POWER_WINDOW_S:g} s, per channel (W)", labels=labels
        )
        failed = GaugeMetricFamily(
            f"{PREFIX}_channel_failed",
            "1 when the channel failed (no measurement after its last sample)",
            labels=labels,
        )
        totals = m.totals()
        watts = self._power_w()
        failed_at = m.failed_at_ns
        for c in m.channels:
            lv = [c.name, c.domain]
            energy.add_metric(lv, totals[c.name])
            power.add_metric(lv, watts[c.name])
            failed.add_metric(lv, 0.0 if failed_at[c.name] is None else 1.0)
        yield from (energy, power, failed)
        yield from self._validity()
        yield from self._sampler()

    def _power_w(self) -> dict[str, float]:
        m = self.meter
        t1 = time.monotonic_ns() if m.stop_ns is None else m.stop_ns
        t0 = max(m.start_ns, t1 - int(POWER_WINDOW_S * 1e9))
        if t1 <= t0:
            return {n: math.nan for n in m.channel_names}
        at = m.cumulative_at(np.array([t0, t1], dtype=np.int64))
        return {n: float(e[1] - e[0]) / ((t1 - t0) * 1e-9) for n, e in at.items()}

    def _validity(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        v = self.judge()
        verdict = GaugeMetricFamily(
            f"{PREFIX}_verdict",
            "1 for the record's verdict (measured, degraded, synthetic, invalid)",
            labels=["verdict"],
        )
        for x in Verdict:
            verdict.add_metric([x.value], 1.0 if v.verdict is x else 0.0)
        reasons = GaugeMetricFamily(
            f"{PREFIX}_validity_reason",
            "1 for each reason behind the verdict (codes: docs/methodology.md, Validity)",
            labels=["code", "verdict", "channel"],
        )
        for r in v.reasons:
            reasons.add_metric([r.code, r.verdict.value, r.channel or ""], 1.0)
        yield from (verdict, reasons)

    def _sampler(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.meter.stats()
        yield GaugeMetricFamily(f"{PREFIX}_sampler_rate_hz", "Polls per second achieved", value=_stat(s, "rate_hz"))
        yield GaugeMetricFamily(
            f"{PREFIX}_sampler_lateness_p99_seconds",
            "99th percentile of how late the sampler woke after its deadlines",
            value=_stat(s, "jitter_p99_us") * 1e-6,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_sampler_missed_deadlines", "Deadlines the sampler missed", value=_stat(s, "missed")
        )
        yield CounterMetricFamily(
            f"{PREFIX}_sampler_dropped_samples", "Samples dropped because the ring was full", value=_stat(s, "dropped")
        )
        yield CounterMetricFamily(
            f"{PREFIX}_sampler_samples", "Samples recorded", value=float(self.meter.sample_count())
        )
