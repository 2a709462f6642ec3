"""Interference: how much a sampler slows a CPU-bound pure-Python workload and a numpy workload in the same
process. Samplers: fastmeter (emulated NVML, 2 GPUs) and the plain pynvml thread, each at 1 and 10 kHz.

On a shared machine the load from others swings a workload's time by tens of % within seconds, far more than the
effect measured here. So each process times the workload in pairs, without then with a fresh sampler (order
alternating), and a pair's slowdown is with / without - 1: both halves see nearly the same neighbours. We report
the median over all pairs of all rounds, of the wall time (what a user sees, GIL waits included) and of the main
thread's CPU time (insensitive to waiting for a core; it shows cache and GIL hand-off costs). BLAS runs
single-threaded (OPENBLAS/OMP/MKL_NUM_THREADS=1): its spinning worker threads would swing the numpy times more
than any sampler does.
"""

from __future__ import annotations

from benchmarks.common import Emulator, Row, median, run_worker

ROUNDS = 3
PAIRS = 10
MAX_SLOWDOWN_AT_1KHZ_PCT = 1.0
SAMPLERS = {
    "fastmeter 1 kHz": {"sampler": "fastmeter", "period_us": 1000},
    "fastmeter 10 kHz": {"sampler": "fastmeter", "period_us": 100},
    "pynvml loop 1 kHz": {"sampler": "pynvml", "period_us": 1000},
    "pynvml loop 10 kHz": {"sampler": "pynvml", "period_us": 100},
}


def run(quick: bool) -> list[Row]:
    rounds, pairs = (1, 4) if quick else (ROUNDS, PAIRS)
    rows: list[Row] = []
    with Emulator(gpus=2) as em:
        env = em.env()
        env.update({f"{lib}_NUM_THREADS": "1" for lib in ("OPENBLAS", "OMP", "MKL")})
        for workload in ("python", "numpy"):
            wall: dict[str, list[float]] = {n: [] for n in SAMPLERS}
            cpu: dict[str, list[float]] = {n: [] for n in SAMPLERS}
            base_s: list[float] = []
            for _ in range(rounds):
                for name, sampler in SAMPLERS.items():
                    r = run_worker({**sampler, "workload": workload, "pairs": pairs}, env)
                    for (off_wall, off_cpu), (on_wall, on_cpu) in zip(r["off"], r["on"]):
                        wall[name].append((on_wall / off_wall - 1.0) * 100.0)
                        cpu[name].append((on_cpu / off_cpu - 1.0) * 100.0)
                        base_s.append(off_wall)
            case = f"{workload} workload ({median(base_s) * 1e3:.0f} ms)"
            for name in SAMPLERS:
                target = ("<=", MAX_SLOWDOWN_AT_1KHZ_PCT) if name.endswith(" 1 kHz") else None
                w = sorted(wall[name])
                spread = f"{len(w)} pairs; wall slowdown quartiles {w[len(w) // 4]:+.1f} / {w[3 * len(w) // 4]:+.1f}%"
                rows += [
                    Row(
                        "interference",
                        case,
                        f"{name} slowdown (wall)",
                        median(wall[name]),
                        "%",
                        target,
                        spread,
                    ),
                    Row("interference", case, f"{name} slowdown (main-thread CPU)", median(cpu[name]), "%"),
                ]
    return rows
