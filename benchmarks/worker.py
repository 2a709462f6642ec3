"""One measurement in a fresh interpreter; prints one JSON line.

- cost (spec has wall_s): a sampler (fastmeter or a plain pynvml loop) runs while the main thread sleeps: process
  CPU time, samples taken, per-thread CPU (bench_cpu_cost).
- paired (spec has workload): a fixed workload timed alternately without and with the sampler (bench_interference).

pynvml finds the emulator only through LD_LIBRARY_PATH at load time, so every case gets its own process, and
fastmeter gets the same harness so the two are compared like for like. Spec keys: sampler ("fastmeter" | "pynvml"),
source ("nvml" | "synthetic"), period_us (0 = as fast as possible; fastmeter then uses its minimum period), spin_us
(fastmeter; None = its default), wall_s, workload ("python" | "numpy"), pairs.
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
                records.append((t_ns, i, nvml.nvmlDeviceGetTotalEnergyConsumption(h), nvml.nvmlDeviceGetPowerUsage(h)))
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


def make_sampler(spec: dict) -> PynvmlLoop | FastmeterSampler:
    kind, period_us = spec["sampler"], int(spec.get("period_us", 1000))
    if kind == "pynvml":
        return PynvmlLoop(period_us)
    if kind == "fastmeter":
        return FastmeterSampler(spec.get("source", "nvml"), period_us, spec.get("spin_us"))
    raise ValueError(f"unknown sampler {kind!r}; use fastmeter or pynvml")


def timed(workload: Callable[[], float]) -> tuple[float, float]:
    """(wall s, this thread's CPU s) of one run."""
    w, c = time.perf_counter(), time.thread_time()
    workload()
    return time.perf_counter() - w, time.thread_time() - c


def cost(spec: dict) -> dict[str, object]:
    """The sampler alone for wall_s while the main thread sleeps: process CPU time and samples taken."""
    sampler = make_sampler(spec)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sampler.start()
    time.sleep(float(spec["wall_s"]))
    threads_ms = thread_cpu_ms()  # before stop(): the sampler's threads end there
    samples = sampler.stop()
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    return {
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "samples": samples,
        "stats": sampler.stats(),
        "threads_cpu_ms": threads_ms,
    }


def paired(spec: dict) -> dict[str, object]:
    """The workload alternately without and with a (fresh) sampler running, pair after pair, so that both halves
    of a pair see nearly the same load from the rest of the machine; the order inside a pair alternates."""
    workload = WORKLOADS[spec["workload"]]
    workload()  # warm caches and allocators before any timing
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    for k in range(int(spec["pairs"])):
        for with_sampler in (k % 2 == 0, k % 2 == 1):
            if not with_sampler:
                off.append(timed(workload))
                continue
            sampler = make_sampler(spec)
            sampler.start()
            time.sleep(0.02)  # let the sampler reach its steady state
            on.append(timed(workload))
            sampler.stop()
    return {"off": off, "on": on}


def main() -> None:
    spec = json.loads(sys.argv[1])
    print(json.dumps(paired(spec) if "workload" in spec else cost(spec)))


if __name__ == "__main__":
    main()
