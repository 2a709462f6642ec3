"""Time to turn 1M recorded samples into an Arrow table (`Meter.samples()`) after the meter stopped."""

from __future__ import annotations

import time

import fastmeter
from benchmarks.common import Row, median

N_SAMPLES = 1_000_000
CHANNELS = 64
REPEATS = 5
MAX_DRAIN_MS = 50.0


def record(n_samples: int) -> fastmeter.Meter:
    """Synthetic source, 64 channels, fastest period: ~1M samples in about a second."""
    m = fastmeter.Meter(sources="synthetic", period_us=50, source_options={"synthetic": {"channels": CHANNELS}})
    with m:
        while m.sample_count() < n_samples:
            time.sleep(0.05)
    return m


def run(quick: bool) -> list[Row]:
    m = record(N_SAMPLES)
    times_ms = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        table = m.samples(0, N_SAMPLES)
        times_ms.append((time.perf_counter() - t) * 1e3)
        if table.num_rows != N_SAMPLES:
            raise RuntimeError(f"samples() returned {table.num_rows} rows, expected {N_SAMPLES}")
    note = f"{CHANNELS} synthetic channels; best of {REPEATS}"
    case = "1M samples -> pyarrow.Table"
    return [
        Row("drain", case, "time", min(times_ms), "ms", ("<=", MAX_DRAIN_MS), note),
        Row("drain", case, "time (median)", median(times_ms), "ms"),
        Row("drain", case, "rate", N_SAMPLES / min(times_ms) / 1e3, "M samples/s"),
    ]
