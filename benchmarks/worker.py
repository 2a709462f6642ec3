"""One measurement in a fresh interpreter: run a sampler (fastmeter, a plain pynvml loop, or none) while the main
thread sleeps or runs a fixed workload; print one JSON line with CPU time, samples and workload times.

Used by bench_cpu_cost and bench_interference: pynvml finds the emulator only through LD_LIBRARY_PATH at load time,
so every case gets its own process, and fastmeter gets the same harness so the two are compared like for like.
Spec keys: sampler ("fastmeter" | "pynvml" | "none"), source ("nvml" | "synthetic"), period_us (0 = as fast as
possible; fastmeter then uses its minimum period), spin_us (fastmeter; None = its default), workload ("idle" |
"python" | "numpy"), wall_s (idle), reps.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


class PynvmlLoop:
    """The plain Python sampler people write: a thread reading energy and power of every GPU each period."""

    def __init__(self, period_us: int) -> None:
        import pynvml

        self.nvml = pynvml
        pynvml.nvmlInit()
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        self.period_ns = period_us * 1000
        self.records: list[tuple[int, int, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        nvml, records, handles = self.nvml, self.records, self.handles
        deadline = time.monotonic_ns()
        while not self._stop.is_set():
            t_ns = time.monotonic_ns()
            for i, h in enumerate(handles):
                records.append(
                    (t_ns, i, nvml.nvmlDeviceGetTotalEnergyConsumption(h), nvml.nvmlDeviceGetPowerUsage(h))
                )
            if self.period_ns:
                deadline += self.period_ns
                wait_ns = deadline - time.monotonic_ns()
                if wait_ns > 0:
                    time.sleep(wait_ns * 1e-9)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.nvml.nvmlShutdown()
        return len(self.records)

    def stats(self) -> dict[str, object]:
        polls = len(self.records) / max(len(self.handles), 1)
        elapsed_s = (self.records[-1][0] - self.records[0][0]) * 1e-9 if self.records else 0.0
        return {"rate_hz": (polls - 1) / elapsed_s if elapsed_s > 0 else 0.0}


class FastmeterSampler:
    def __init__(self, source: str, period_us: int, spin_us: int | None) -> None:
        import fastmeter

        period_us = max(period_us, fastmeter.meter.MIN_PERIOD_US)
        self.meter = fastmeter.Meter(sources=(source,), period_us=period_us, spin_us=spin_us)

    def start(self) -> None:
        self.meter.start()

    def stop(self) -> int:
        self.meter.stop()
        return self.meter.sample_count()

    def stats(self) -> dict[str, object]:
        s = self.meter.stats()
        return {k: s[k] for k in ("rate_hz", "jitter_p99_us", "missed", "dropped")}


class NoSampler:
    def start(self) -> None:
        pass

    def stop(self) -> int:
        return 0

    def stats(self) -> dict[str, object]:
        return {}


def python_workload() -> float:
    """CPU-bound pure Python: integer arithmetic and a dict, ~0.15 s on an idle 2-core VM."""
    acc, table = 0, {}
    for i in range(1_500_000):
        acc = (acc * 31 + i) % 1_000_003
        table[i & 1023] = acc
    return float(acc + len(table))


_RNG = np.random.default_rng(0)
_MATRIX = _RNG.standard_normal((256, 256))
_VECTOR = _RNG.standard_normal(1_000_000)


def numpy_workload() -> float:
    """numpy: matrix products, a sort and reductions over 1M doubles; ~0.15 s single-threaded, idle 2-core VM."""
    m = _MATRIX
    for _ in range(60):
        m = np.tanh(m @ _MATRIX)
    s = np.sort(_VECTOR)
    return float(m.sum() + s[::1000].sum() + np.sqrt(np.abs(_VECTOR)).sum())


WORKLOADS: dict[str, Callable[[], float]] = {"python": python_workload, "numpy": numpy_workload}


def thread_cpu_ms() -> list[float]:
    """CPU time of each live thread of this process (Linux schedstat, ns resolution), largest first."""
    out = []
    for task in Path("/proc/self/task").iterdir():
        try:
            out.append(int((task / "schedstat").read_text().split()[0]) / 1e6)
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile, or schedstat is absent
    return sorted(out, reverse=True)


def main() -> None:
    spec = json.loads(sys.argv[1])
    kind, period_us = spec["sampler"], int(spec.get("period_us", 1000))
    sampler = (
        PynvmlLoop(period_us)
        if kind == "pynvml"
        else FastmeterSampler(spec.get("source", "nvml"), period_us, spec.get("spin_us"))
        if kind == "fastmeter"
        else NoSampler()
    )
    workload = spec.get("workload", "idle")
    if workload != "idle":
        WORKLOADS[workload]()  # warm caches and allocators before any timing
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sampler.start()
    times_s: list[float] = []
    if workload == "idle":
        time.sleep(float(spec["wall_s"]))
    else:
        time.sleep(0.05)  # let the sampler reach its steady state
        for _ in range(int(spec.get("reps", 5))):
            t = time.perf_counter()
            WORKLOADS[workload]()
            times_s.append(time.perf_counter() - t)
    threads_ms = thread_cpu_ms()  # before stop(): the sampler's threads end there
    samples = sampler.stop()
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    out = {"cpu_s": cpu_s, "wall_s": wall_s, "samples": samples, "times_s": times_s, "stats": sampler.stats()}
    out["threads_cpu_ms"] = threads_ms
    print(json.dumps(out))


if __name__ == "__main__":
    main()
