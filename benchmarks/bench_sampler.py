"""Sustained sampler rate and lateness (jitter) from `Meter.stats()`, synthetic and emulated-NVML sources."""

from __future__ import annotations

import time

import fastmeter

from benchmarks.common import Emulator, Row, median

CASES = (("synthetic", 50), ("synthetic", 1000), ("nvml", 50), ("nvml", 1000))
REPEATS = 3
MIN_RATE_SYNTHETIC_HZ = 20_000
MAX_P99_AT_1KHZ_US = 50.0


def measure(source: str, period_us: int, seconds: float) -> dict[str, float]:
    with fastmeter.Meter(sources=(source,), period_us=period_us) as m:
        time.sleep(seconds)
    s = m.stats()
    keys = ("rate_hz", "jitter_p50_us", "jitter_p99_us", "jitter_max_us", "missed", "dropped")
    return {k: float(s[k]) for k in keys}  # type: ignore[arg-type]


def run(quick: bool) -> list[Row]:
    seconds = 0.5 if quick else 3.0
    rows: list[Row] = []
    with Emulator(gpus=2):
        for source, period_us in CASES:
            runs = [measure(source, period_us, seconds) for _ in range(REPEATS)]
            m = {k: median([r[k] for r in runs]) for k in runs[0]}
            case = f"{source}{' (2 GPUs)' if source == 'nvml' else ''} @ {period_us} µs"
            rate_target = (">=", MIN_RATE_SYNTHETIC_HZ) if (source, period_us) == ("synthetic", 50) else None
            jitter_target = ("<=", MAX_P99_AT_1KHZ_US) if period_us == 1000 else None
            note = f"median of {REPEATS} runs of {seconds:g} s"
            rows += [
                Row("sampler", case, "rate", m["rate_hz"], "Hz", rate_target, note),
                Row("sampler", case, "lateness p50", m["jitter_p50_us"], "µs"),
                Row("sampler", case, "lateness p99", m["jitter_p99_us"], "µs", jitter_target),
                Row("sampler", case, "lateness max", m["jitter_max_us"], "µs"),
                Row("sampler", case, "missed deadlines", m["missed"], "polls"),
                Row("sampler", case, "dropped samples", m["dropped"], "samples"),
            ]
    return rows
