"""Cool-down between matrix cells: the GPUs' idle baseline (power and temperature, read before the first cell) and a
bounded wait until every GPU the matrix measures is back within tolerance of it (fastmeter.validity's
COOLDOWN_* constants). Every wait is recorded; one that hits its bound makes the matrix degraded
(`cooldown_incomplete`), and a machine without GPU telemetry says so (`cooldown_unknown`) instead of pretending.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastmeter.validity import (
    COOLDOWN_POWER_SLACK_W,
    COOLDOWN_POWER_TOLERANCE,
    COOLDOWN_TEMPERATURE_SLACK_C,
    Reason,
    Verdict,
)

POLL_S = 0.5  # NVML power is a 1 s average on recent GPUs: polling faster only re-reads the same value

Reading = dict[str, tuple[float, float]]  # GPU key -> (power_w, temperature_c)


class GpuTelemetry:
    """Power (W) and temperature (°C) of the chosen GPUs through NVML (FASTMETER_NVML_LIBRARY is honoured, as by the
    fingerprint). `unavailable` says why nothing can be read (no NVML, no GPU): then every figure is unknown."""

    def __init__(self, gpus: Sequence[int | str]) -> None:
        from fastmeter.env.gpu import _describe, _load_pynvml, _Unavailable

        self.unavailable: str | None = None
        self._handles: dict[str, Any] = {}
        try:
            self._nv = _load_pynvml()
            self._nv.nvmlInit()
            count = self._nv.nvmlDeviceGetCount()
            chosen = list(gpus) or list(range(count))
            for g in chosen:
                handle = (
                    self._nv.nvmlDeviceGetHandleByUUID(g)
                    if isinstance(g, str)
                    else self._nv.nvmlDeviceGetHandleByIndex(g)
                )
                self._handles[str(g)] = handle
        except _Unavailable as exc:
            self.unavailable = str(exc)
        except Exception as exc:  # pynvml raises NVMLError subclasses built at run time
            self.unavailable = f"NVML: {_describe(exc)}"
        if not self._handles and self.unavailable is None:
            self.unavailable = "NVML reports no GPU"

    def close(self) -> None:
        if self._handles:
            self._nv.nvmlShutdown()
            self._handles = {}

    def read(self) -> Reading:
        return {
            k: (self._nv.nvmlDeviceGetPowerUsage(h) / 1000.0, float(self._nv.nvmlDeviceGetTemperature(h, 0)))
            for k, h in self._handles.items()
        }


@dataclass(frozen=True)
class Baseline:
    power_w: dict[str, float]
    temperature_c: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"power_w": self.power_w, "temperature_c": self.temperature_c}

    def within(self, reading: Reading) -> bool:
        return all(
            p <= self.power_w[k] * (1 + COOLDOWN_POWER_TOLERANCE) + COOLDOWN_POWER_SLACK_W
            and t <= self.temperature_c[k] + COOLDOWN_TEMPERATURE_SLACK_C
            for k, (p, t) in reading.items()
        )


def measure_baseline(
    telemetry: GpuTelemetry, seconds: float, sleep: Callable[[float], None] = time.sleep
) -> Baseline | None:
    """Median power and temperature per GPU over `seconds` of readings; None without telemetry."""
    if telemetry.unavailable is not None:
        return None
    readings = []
    deadline = time.monotonic() + seconds
    while True:
        readings.append(telemetry.read())
        if time.monotonic() >= deadline:
            break
        sleep(POLL_S)
    keys = readings[0].keys()
    return Baseline(
        {k: statistics.median(r[k][0] for r in readings) for k in keys},
        {k: statistics.median(r[k][1] for r in readings) for k in keys},
    )


def cool_down(
    telemetry: GpuTelemetry,
    baseline: Baseline | None,
    min_s: float,
    max_s: float,
    stopped: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Wait at least `min_s`, then until the GPUs are back at `baseline` or `max_s` have passed; the record says
    how long, whether the baseline was reached (None: unknown) and the last reading."""
    t0 = time.monotonic()
    time.sleep(min_s)
    if baseline is None:
        return {
            "waited_s": time.monotonic() - t0,
            "reached": None,
            "reason": f"no GPU telemetry ({telemetry.unavailable}): waited cooldown_min_s only",
        }
    reading = telemetry.read()
    while not baseline.within(reading) and time.monotonic() - t0 < max_s and not stopped():
        time.sleep(min(POLL_S, max(0.0, max_s - (time.monotonic() - t0))))
        reading = telemetry.read()
    return {
        "waited_s": time.monotonic() - t0,
        "reached": baseline.within(reading),
        "power_w": {k: v[0] for k, v in reading.items()},
        "temperature_c": {k: v[1] for k, v in reading.items()},
    }


def cooldown_reasons(records: Sequence[dict[str, Any]]) -> list[Reason]:
    """`cooldown_incomplete` when some wait hit its bound; `cooldown_unknown` when there was nothing to read."""
    out = []
    short = sum(1 for r in records if r.get("reached") is False)
    if short:
        out.append(
            Reason(
                "cooldown_incomplete",
                f"{short} cell(s) started before the GPUs were back at their idle baseline (cooldown_max_s reached)",
                Verdict.DEGRADED,
            )
        )
    if any(r.get("reached") is None for r in records):
        out.append(
            Reason(
                "cooldown_unknown",
                "no GPU telemetry: cells were not checked to start from the idle baseline",
                Verdict.DEGRADED,
            )
        )
    return out
