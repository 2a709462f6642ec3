"""CPU time per sample: fastmeter's native sampler vs a plain pynvml polling loop in a Python thread.

Both run on the same NVML emulator (2 GPUs) in fresh interpreters (benchmarks/worker.py) whose main thread sleeps;
process CPU time (user + system, all threads) over the sampling interval is divided by the samples recorded (one
sample = one GPU at one instant: energy counter + power). Cases run interleaved in each round and the ratio is
taken within a round, so a busy neighbour slows both sides of one ratio alike.
"""

from __future__ import annotations

import os

from benchmarks.common import Emulator, Row, median, run_worker

REPEATS = 3
MIN_RATIO = 10.0
RATES = (("1 kHz", 1000), ("as fast as possible", 0))


def variants(period_us: int) -> dict[str, dict[str, object]]:
    v: dict[str, dict[str, object]] = {
        "fastmeter": {"sampler": "fastmeter", "period_us": period_us},
        "pynvml loop": {"sampler": "pynvml", "period_us": period_us},
    }
    if period_us:
        v["fastmeter spin_us=0"] = {"sampler": "fastmeter", "period_us": period_us, "spin_us": 0}
    return v


def run(quick: bool) -> list[Row]:
    wall_s = 0.5 if quick else 2.0
    rows: list[Row] = []
    with Emulator(gpus=2) as em:
        for label, period_us in RATES:
            cases = variants(period_us)
            per_sample: dict[str, list[float]] = {k: [] for k in cases}
            rate: dict[str, list[float]] = {k: [] for k in cases}
            threads: dict[str, list[float]] = {}
            load = [os.getloadavg()[0]]
            for _ in range(REPEATS):
                for name, spec in cases.items():
                    r = run_worker({**spec, "wall_s": wall_s}, em.env())
                    per_sample[name].append(r["cpu_s"] / max(r["samples"], 1) * 1e6)
                    rate[name].append(float(r["stats"].get("rate_hz", 0.0)))
                    threads[name] = r["threads_cpu_ms"][1:]  # [0] is the main thread (imports included)
                load.append(os.getloadavg()[0])
            loads = f"load average {min(load):.1f}-{max(load):.1f}"
            case = f"{label}, 2 GPUs"
            for name in cases:
                other = ", ".join(f"{ms:.0f}" for ms in threads[name])
                lo, hi = min(per_sample[name]), max(per_sample[name])
                note = (
                    f"poll rate {median(rate[name]):.0f} Hz; median of {REPEATS} interleaved rounds x {wall_s:g} s, "
                    f"range {lo:.1f}-{hi:.1f} µs; {loads}; sampler-side threads' CPU in the last run: {other} ms"
                )
                rows.append(Row("cpu_cost", case, f"{name} CPU/sample", median(per_sample[name]), "µs", None, note))
            for name in cases:
                if name.startswith("fastmeter"):
                    ratios = [p / f for p, f in zip(per_sample["pynvml loop"], per_sample[name])]
                    rows.append(
                        Row(
                            "cpu_cost",
                            case,
                            f"pynvml / {name}",
                            median(ratios),
                            "x",
                            (">=", MIN_RATIO),
                            f"per-round ratio, median; range {min(ratios):.2f}-{max(ratios):.2f}; {loads}",
                        )
                    )
    return rows
