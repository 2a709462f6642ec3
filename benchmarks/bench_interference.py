"""Interference: how much a sampler slows a CPU-bound pure-Python workload and a numpy workload in the same
process, vs no sampler. Samplers: fastmeter (emulated NVML, 2 GPUs) and the plain pynvml thread, each at 1 and
10 kHz. Each round runs every case once, in a fresh interpreter, in a rotated order; a case's workload time is the
fastest of its repetitions (the one least disturbed by neighbours); its slowdown is taken against the same round's no-sampler time; we report the median
slowdown over rounds. BLAS runs single-threaded (OPENBLAS/OMP/MKL_NUM_THREADS=1): on a small shared machine its
spinning worker threads swing the numpy times far more than any sampler does. Noise on a shared machine is a few %: read small values as "within noise".
"""

from __future__ import annotations

from benchmarks.common import Emulator, Row, median, run_worker

ROUNDS = 5
MAX_SLOWDOWN_AT_1KHZ_PCT = 1.0
SAMPLERS = {
    "none": {"sampler": "none"},
    "fastmeter 1 kHz": {"sampler": "fastmeter", "period_us": 1000},
    "fastmeter 10 kHz": {"sampler": "fastmeter", "period_us": 100},
    "pynvml loop 1 kHz": {"sampler": "pynvml", "period_us": 1000},
    "pynvml loop 10 kHz": {"sampler": "pynvml", "period_us": 100},
}


def run(quick: bool) -> list[Row]:
    rounds, reps = (2, 3) if quick else (ROUNDS, 5)
    names = list(SAMPLERS)
    rows: list[Row] = []
    with Emulator(gpus=2) as em:
        env = em.env()
        env.update({f"{lib}_NUM_THREADS": "1" for lib in ("OPENBLAS", "OMP", "MKL")})
        for workload in ("python", "numpy"):
            slowdown: dict[str, list[float]] = {n: [] for n in names[1:]}
            base_s: list[float] = []
            for k in range(rounds):
                times: dict[str, float] = {}
                for name in names[k % len(names) :] + names[: k % len(names)]:
                    spec = {**SAMPLERS[name], "workload": workload, "reps": reps}
                    times[name] = min(run_worker(spec, env)["times_s"])
                base_s.append(times["none"])
                for name in names[1:]:
                    slowdown[name].append((times[name] / times["none"] - 1.0) * 100.0)
            case = f"{workload} workload ({median(base_s) * 1e3:.0f} ms)"
            for name, values in slowdown.items():
                target = ("<=", MAX_SLOWDOWN_AT_1KHZ_PCT) if name.endswith(" 1 kHz") else None
                spread = f"rounds: {', '.join(f'{v:+.1f}' for v in values)}"
                rows.append(
                    Row("interference", case, f"{name} slowdown", median(values), "%", target, spread)
                )
    return rows
