"""Update-aware scheduling: CPU per second of measurement, how well counter updates are located, and window
energy error, for fastmeter adaptive vs fastmeter fixed 1 kHz vs a 1 kHz pynvml loop on one 100 ms-update GPU.

The emulated GPU (one, A100/H100-like): energy counter and power refreshed every 100 ms, power a 25 ms trailing
mean, square-wave load 100/400 W, 170 ms, 30% duty. Each case runs in a fresh interpreter
(benchmarks/schedule_worker.py): 2 s to settle (the adaptive schedule learns the refresh), then 5 s measured. The
three cases run interleaved in every round; ratios are taken within a round, medians over rounds.
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks.common import Emulator, Row, median, run_worker
from tests.emulators.nvml import GpuSpec, Square

ROUNDS = 3
MIN_CPU_RATIO = 10.0
MAX_LOCATION_P99_MS = 1.0
MAX_ERROR_RATIO = 1.1  # "no worse than dense polling", with room for the run-to-run noise of a median of ~80
WAVE = (100.0, 400.0, 0.17, 0.3)
CYCLE_S = 1.7  # common period of the 170 ms load and the 100 ms refresh grid: windows repeat their phase
WINDOWS = [[0.013 + 0.2 * k, length] for k in range(8) for length in (0.1, 0.3)]
CASES = ("adaptive", "fixed", "pynvml")
LABEL = {"adaptive": "fastmeter adaptive", "fixed": "fastmeter fixed 1 kHz", "pynvml": "pynvml loop 1 kHz"}


def run(quick: bool) -> list[Row]:
    warm_s, wall_s = (1.5, 2.0) if quick else (2.0, 5.0)  # 2 s holds at least one 1.7 s cycle of windows
    gpu = GpuSpec(waveform=Square(*WAVE), counter_refresh_ms=100, power_refresh_ms=100, power_window_ms=25)
    cpu: dict[str, list[float]] = {c: [] for c in CASES}
    polls: dict[str, list[float]] = {c: [] for c in CASES}
    loc: dict[str, list[np.ndarray]] = {c: [] for c in CASES}
    err: dict[str, list[float]] = {c: [] for c in CASES if c != "pynvml"}
    load: list[float] = []
    with Emulator(gpus=1) as em:
        (spec,) = em.configure([gpu])
        base = {
            "period_us": 1000,
            "warm_s": warm_s,
            "wall_s": wall_s,
            "t0_ns": spec.t0_ns,
            "refresh_ms": 100,
            "gpu": {"counter_refresh_ms": 100, "power_refresh_ms": 100, "power_window_ms": 25, "waveform": WAVE},
            "cycle_s": CYCLE_S,
            "windows": WINDOWS,
        }
        for _ in range(ROUNDS):
            load.append(os.getloadavg()[0])
            for case in CASES:
                r = run_worker({**base, "sampler": case}, em.env(), module="benchmarks.schedule_worker")
                cpu[case].append(r["cpu_s"] / r["wall_s"])
                polls[case].append(r["polls"] / r["wall_s"])
                loc[case].append(np.asarray(r["located_errors_ns"], dtype=np.float64) * 1e-6)
                if case in err:
                    errs = r["window_errors"]
                    err[case].append(float(np.median(errs)) * 100 if errs else float("nan"))
            time.sleep(0.1)
        load.append(os.getloadavg()[0])
    note = (
        f"{ROUNDS} interleaved rounds x {wall_s:g} s after {warm_s:g} s settling; "
        f"load average {min(load):.1f}-{max(load):.1f}"
    )
    rows: list[Row] = []
    case = "1 GPU, 100 ms refresh, 1 kHz"
    for c in CASES:
        rng = f"range {min(cpu[c]) * 1e3:.2f}-{max(cpu[c]) * 1e3:.2f} ms/s"
        rows.append(
            Row(
                "schedule", case, f"{LABEL[c]} CPU per s measured", median(cpu[c]) * 1e3, "ms/s", None, f"{rng}; {note}"
            )
        )
        rows.append(Row("schedule", case, f"{LABEL[c]} polls per s", median(polls[c]), "Hz", None, note))
        p50 = [float(np.percentile(x, 50)) for x in loc[c] if x.size]
        p99 = [float(np.percentile(x, 99)) for x in loc[c] if x.size]
        n = sum(x.size for x in loc[c])
        target = ("<=", MAX_LOCATION_P99_MS) if c == "adaptive" else None
        rows.append(
            Row("schedule", case, f"{LABEL[c]} update located p50", median(p50), "ms", None, f"{n} updates; {note}")
        )
        rows.append(
            Row(
                "schedule",
                case,
                f"{LABEL[c]} update located p99",
                median(p99),
                "ms",
                target,
                f"range {min(p99):.3f}-{max(p99):.3f}; {note}",
            )
        )
    for c in err:
        rows.append(
            Row(
                "schedule",
                case,
                f"{LABEL[c]} window error (median)",
                median(err[c]),
                "%",
                None,
                f"{len(WINDOWS)} windows (0.1 and 0.3 s) per {CYCLE_S:g} s cycle at fixed phases; "
                f"range {min(err[c]):.2f}-{max(err[c]):.2f}",
            )
        )
    ratios = [p / a for p, a in zip(cpu["pynvml"], cpu["adaptive"])]
    rows.append(
        Row(
            "schedule",
            case,
            "pynvml loop / fastmeter adaptive CPU",
            median(ratios),
            "x",
            (">=", MIN_CPU_RATIO),
            f"per-round ratio, range {min(ratios):.1f}-{max(ratios):.1f}",
        )
    )
    ratios = [f / a for f, a in zip(cpu["fixed"], cpu["adaptive"])]
    rows.append(
        Row(
            "schedule",
            case,
            "fastmeter fixed / adaptive CPU",
            median(ratios),
            "x",
            None,
            f"per-round ratio, range {min(ratios):.1f}-{max(ratios):.1f}",
        )
    )
    ratios = [a / f for a, f in zip(err["adaptive"], err["fixed"])]
    rows.append(
        Row(
            "schedule",
            case,
            "window error adaptive / fixed",
            median(ratios),
            "x",
            ("<=", MAX_ERROR_RATIO),
            f"per-round ratio, range {min(ratios):.2f}-{max(ratios):.2f}",
        )
    )
    return rows
