"""One case of bench_schedule in a fresh interpreter; prints one JSON line.

The sampler (fastmeter adaptive, fastmeter fixed, or the plain pynvml loop of worker.py) runs on the emulated GPU
whose energy counter refreshes every `refresh_ms` from `t0_ns`. After `warm_s` (the adaptive schedule's learning)
it measures `wall_s` of steady state: process CPU time, and where each counter update was located (the middle of
the two polls around the change) against the emulator's true refresh instant. fastmeter cases also measure window
energy against the emulator's exact integral on windows at fixed phases of the waveform and refresh grid, so every
case sees the same windows.

Spec keys: sampler ("adaptive" | "fixed" | "pynvml"), period_us, warm_s, wall_s, t0_ns, refresh_ms, gpu (GpuSpec
fields for the analytic model), cycle_s (the common period of waveform and refresh grid), windows
([[offset_s, length_s], ...] within a cycle).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from benchmarks.worker import PynvmlLoop, thread_cpu_ms
from tests.emulators.nvml import GpuSpec, Square


def located_errors_ns(t_ns: np.ndarray, counter: np.ndarray, t0_ns: int, refresh_ns: int) -> np.ndarray:
    """|located - true| of every counter change: located at the middle of the polls around it, true = the latest
    refresh instant at or before the poll that saw it."""
    changed = np.flatnonzero(np.diff(counter) != 0) + 1
    prev, seen = t_ns[changed - 1], t_ns[changed]
    located = prev + (seen - prev) // 2
    true = t0_ns + (seen - t0_ns) // refresh_ns * refresh_ns
    return np.abs(located - true)


def window_errors(meter, gpu: GpuSpec, lo_ns: int, hi_ns: int, spec: dict) -> list[float]:
    cycle_ns = int(spec["cycle_s"] * 1e9)
    t0 = int(spec["t0_ns"])
    out = []
    n = (lo_ns - t0) // cycle_ns + 1
    while t0 + n * cycle_ns < hi_ns:
        for offset_s, length_s in spec["windows"]:
            a = t0 + n * cycle_ns + int(offset_s * 1e9)
            b = a + int(length_s * 1e9)
            if b < hi_ns:
                truth = gpu.energy_j(a, b)
                out.append(abs(meter.energy_between(a, b)["gpu0"] - truth) / truth)
        n += 1
    return out


def main() -> None:
    spec = json.loads(sys.argv[1])
    kind = spec["sampler"]
    refresh_ns = int(spec["refresh_ms"] * 1e6)
    gpu = GpuSpec(**{**spec["gpu"], "waveform": Square(*spec["gpu"]["waveform"]), "t0_ns": spec["t0_ns"]})
    if kind == "pynvml":
        sampler = PynvmlLoop(spec["period_us"])
        sampler.start()
    else:
        import fastmeter

        meter = fastmeter.Meter("nvml", spec["period_us"], spin_us=0, schedule=kind)
        meter.start()
    time.sleep(spec["warm_s"])
    cpu0, t_lo = time.process_time(), time.monotonic_ns()
    threads0 = thread_cpu_ms()
    time.sleep(spec["wall_s"])
    cpu_s, t_hi = time.process_time() - cpu0, time.monotonic_ns()
    threads = thread_cpu_ms()
    out: dict[str, object] = {"cpu_s": cpu_s, "wall_s": (t_hi - t_lo) * 1e-9}
    if len(threads) == len(threads0):  # per-thread CPU over the measured span, largest first
        out["threads_cpu_ms"] = [b - a for a, b in zip(threads0, threads)]
    if kind == "pynvml":
        sampler.stop()
        rec = np.array([r[:3] for r in sampler.records if r[1] == 0], dtype=np.int64)
        t_ns, counter = rec[:, 0], rec[:, 2]
    else:
        meter.stop()
        table = meter.samples()
        t_ns = table.column("t_ns").to_numpy()
        counter = table.column("energy_j").to_numpy()
        s = meter.stats()
        out["stats"] = {k: s[k] for k in ("missed", "missed_share", "sched_policy")}
        out["schedule"] = s.get("schedule", {})
        out["window_errors"] = window_errors(meter, gpu, t_lo, t_hi, spec)
    keep = (t_ns >= t_lo) & (t_ns <= t_hi)
    out["polls"] = int(keep.sum())
    out["located_errors_ns"] = located_errors_ns(t_ns[keep], counter[keep], spec["t0_ns"], refresh_ns).tolist()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
