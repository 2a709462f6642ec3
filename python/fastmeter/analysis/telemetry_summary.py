"""Per-GPU telemetry figures of a run: mean/max temperature, time throttled, mean utilization, GPU-busy time and the
energy per GPU-busy second, read batch by batch (a day-long telemetry file is never loaded whole).

Between two polls a value is held (zero-order hold from each reading to the next), which is how the driver reports
them too: a reading stands for the time until the next one. Time throttled counts the stretches whose polls saw a
throttling bit (`fastmeter.telemetry.NOT_THROTTLING`), so it is seen at the telemetry rate; the cumulative
`throttle_*_ns` counters catch shorter episodes and feed the validity check instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from fastmeter.telemetry import NOT_THROTTLING


@dataclass
class _Held:
    """Hold-integral, mean and max of one series over [t0, t1]."""

    last_t: int | None = None
    last_v: float = math.nan
    integral: float = 0.0  # value x seconds
    seconds: float = 0.0
    max: float = -math.inf
    min: float = math.inf

    def add(self, t: np.ndarray, v: np.ndarray, t0: int, t1: int) -> None:
        for ti, vi in zip(t.tolist(), v.tolist()):
            if self.last_t is not None:
                a, b = max(self.last_t, t0), min(ti, t1)
                if b > a:
                    self.integral += self.last_v * (b - a) * 1e-9
                    self.seconds += (b - a) * 1e-9
            if t0 <= ti <= t1:
                self.max, self.min = max(self.max, vi), min(self.min, vi)
            self.last_t, self.last_v = ti, vi

    @property
    def mean(self) -> float:
        return self.integral / self.seconds if self.seconds > 0 else math.nan


@dataclass
class GpuTelemetry:
    """One GPU channel's figures over a span; NaN where the GPU did not report the series."""

    channel: str
    mean_util_pct: float
    busy_s: float  # integral of utilization: seconds with a kernel running
    mean_temp_c: float
    max_temp_c: float
    throttled_s: float
    mean_sm_clock_mhz: float
    power_limit_w_min: float
    power_limit_w_max: float
    energy_j: float = math.nan
    j_per_busy_s: float = math.nan


@dataclass
class TelemetryAccumulator:
    """Feed record batches (time order) of a telemetry table; `gpus()` gives the figures over [t0_ns, t1_ns]."""

    t0_ns: int
    t1_ns: int
    _series: dict[tuple[str, str], _Held] = field(default_factory=dict)

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows == 0:
            return
        t = batch.column("t_ns").to_numpy()
        channels = np.asarray(batch.column("channel").cast(pa.string()).to_pylist(), dtype=object)
        metrics = np.asarray(batch.column("metric").cast(pa.string()).to_pylist(), dtype=object)
        values = batch.column("value").to_numpy()
        keys = sorted(set(zip(channels.tolist(), metrics.tolist())))
        for ch, m in keys:
            sel = (channels == ch) & (metrics == m)
            v = values[sel]
            if m == "clocks_event_reasons":  # 1 while throttled: its hold-integral is the time throttled
                v = np.array([1.0 if int(x) & ~NOT_THROTTLING else 0.0 for x in v.tolist()])
            self._series.setdefault((ch, m), _Held()).add(t[sel], v, self.t0_ns, self.t1_ns)

    def add_all(self, batches: Iterable[pa.RecordBatch]) -> TelemetryAccumulator:
        for b in batches:
            self.add(b)
        return self

    def _get(self, ch: str, m: str) -> _Held:
        return self._series.get((ch, m), _Held())

    def gpus(self, energy_j: Mapping[str, float] | None = None) -> list[GpuTelemetry]:
        """Figures per GPU channel (those with any GPU metric); `energy_j` per channel adds J per GPU-busy second."""
        energy_j = energy_j or {}
        out = []
        for ch in sorted({c for c, _ in self._series if c.startswith("gpu")}):
            util, temp = self._get(ch, "gpu_util_pct"), self._get(ch, "gpu_temp_c")
            limit = self._get(ch, "power_limit_w")
            busy_s = util.integral / 100.0 if util.seconds > 0 else math.nan
            e = energy_j.get(ch, math.nan)
            out.append(
                GpuTelemetry(
                    channel=ch,
                    mean_util_pct=util.mean,
                    busy_s=busy_s,
                    mean_temp_c=temp.mean,
                    max_temp_c=temp.max if temp.max > -math.inf else math.nan,
                    throttled_s=self._get(ch, "clocks_event_reasons").integral
                    if self._get(ch, "clocks_event_reasons").seconds > 0
                    else math.nan,
                    mean_sm_clock_mhz=self._get(ch, "sm_clock_mhz").mean,
                    power_limit_w_min=limit.min if limit.min < math.inf else math.nan,
                    power_limit_w_max=limit.max if limit.max > -math.inf else math.nan,
                    energy_j=e,
                    # NaN rather than a division by zero: a GPU that was never busy has no energy per busy second.
                    j_per_busy_s=e / busy_s if busy_s and busy_s > 0 else math.nan,
                )
            )
        return out
