"""Sustained sampler rate and lateness (jitter) from `Meter.stats()`, synthetic and emulated-NVML sources.

The cases run interleaved in every round (so a busy neighbour hits them alike); each row is the median over rounds
with the range and the load average during the run in its note."""

from __future__ import annotations

import os
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
    runs: dict[tuple[str, int], list[dict[str, float]]] = {c: [] for c in CASES}
    load = [os.getloadavg()[0]]
    with Emulator(gpus=2):
        for _ in range(REPEATS):
            for source, period_us in CASES:
                runs[(source, period_us)].append(measure(source, period_us, seconds))
            load.append(os.getloadavg()[0])
    for source, period_us in CASES:
        rs = runs[(source, period_us)]
        m = {k: median([r[k] for r in rs]) for k in rs[0]}

        def note(key: str) -> str:
            lo, hi = min(r[key] for r in rs), max(r[key] for r in rs)
            return (
                f"median of {REPEATS} interleaved rounds x {seconds:g} s, range {lo:,.0f}-{hi:,.0f}; "
                f"load average {min(load):.1f}-{max(load):.1f}"
            )

        case = f"{source}{' (2 GPUs)' if source == 'nvml' else ''} @ {period_us} µs"
        rate_target = (">=", MIN_RATE_SYNTHETIC_HZ) if (source, period_us) == ("synthetic", 50) else None
        jitter_target = ("<=", MAX_P99_AT_1KHZ_US) if period_us == 1000 else None
        rows += [
            Row("sampler", case, "rate", m["rate_hz"], "Hz", rate_target, note("rate_hz")),
            Row("sampler", case, "lateness p50", m["jitter_p50_us"], "µs", None, note("jitter_p50_us")),
            Row("sampler", case, "lateness p99", m["jitter_p99_us"], "µs", jitter_target, note("jitter_p99_us")),
            Row("sampler", case, "lateness max", m["jitter_max_us"], "µs", None, note("jitter_max_us")),
            Row("sampler", case, "missed deadlines", m["missed"], "polls", None, note("missed")),
            Row("sampler", case, "dropped samples", m["dropped"], "samples", None, note("dropped")),
        ]
    return rows
