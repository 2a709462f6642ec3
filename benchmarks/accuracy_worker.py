"""Window energy on the NVML emulator as fastmeter, Zeus and CodeCarbon report it, in one fresh interpreter (pynvml
inside Zeus and CodeCarbon finds the emulator only through LD_LIBRARY_PATH at load time).

The task of a window runs from the instant the tool's "begin" returned (t0_ns) to the instant its "end" was called
(t1_ns): that is what a user measures. Prints one JSON line: {"windows": [[tool, size_s, t0_ns, t1_ns, energy_j]],
"skipped": {tool: reason}}; the parent computes the analytic truth for [t0_ns, t1_ns] from the emulator's model.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from collections.abc import Callable

import fastmeter

now_ns = time.monotonic_ns
# energy_between waits (bounded) for the counter's first update past the window's end; its default bound (1.5 update
# periods + 2 poll periods) is a few ms for a continuous counter, which a preempted sampler overruns on a busy
# machine, and the answer is then extrapolated. We measure the method, so we let it wait for the final answer.
WAIT_FINAL_S = 1.0
PHASE_S = 0.12  # random delay before a window, longer than the slowest counter refresh (100 ms)


def hold(seconds: float) -> None:
    """Let a window last `seconds`: sleep the bulk, spin the last 2 ms so short windows have their length."""
    end = time.perf_counter() + seconds
    if seconds > 0.003:
        time.sleep(seconds - 0.002)
    while time.perf_counter() < end:
        pass


def fastmeter_energy_j(meter: fastmeter.Meter, t0_ns: int, t1_ns: int) -> float | None:
    """None when the sampler was starved past the window's end (SpanError): counted as a failed window."""
    try:
        return meter.energy_between(t0_ns, t1_ns)["gpu0"]
    except fastmeter.errors.SpanError:
        return None


def zeus_window(monitor: object) -> Callable[[float], tuple[int, int, float]]:
    def one(size_s: float) -> tuple[int, int, float]:
        monitor.begin_window("w", sync_execution=False)  # type: ignore[attr-defined]
        t0 = now_ns()
        hold(size_s)
        t1 = now_ns()
        m = monitor.end_window("w", sync_execution=False)  # type: ignore[attr-defined]
        return t0, t1, float(m.gpu_energy[0])

    return one


def codecarbon_window(size_s: float) -> tuple[int, int, float]:
    from codecarbon import OfflineEmissionsTracker

    tracker = OfflineEmissionsTracker(
        country_iso_code="USA", measure_power_secs=1, save_to_file=False, log_level="error", gpu_ids=[0]
    )
    tracker.start()
    t0 = now_ns()
    hold(size_s)
    t1 = now_ns()
    tracker.stop()
    return t0, t1, float(tracker.final_emissions_data.gpu_energy) * 3.6e6  # kWh -> J


def main() -> None:
    spec = json.loads(sys.argv[1])
    counts: dict[str, int] = {k: int(v) for k, v in spec["windows"].items()}  # size_s (as text) -> windows
    cc_counts: dict[str, int] = {k: int(v) for k, v in spec["codecarbon_windows"].items()}
    rng = random.Random(1)
    out: list[list[object]] = []
    skipped: dict[str, str] = {}
    try:
        from zeus.monitor import ZeusMonitor

        zeus: Callable[[float], tuple[int, int, float]] | None
        zeus = zeus_window(ZeusMonitor(gpu_indices=[0], cpu_indices=[]))
    except Exception as e:  # noqa: BLE001 - an optional peer: a failure to set it up is reported, not fatal
        zeus, skipped["zeus"] = None, f"{type(e).__name__}: {e}"
    meters = {
        f"fastmeter {1e3 / p:g} kHz": fastmeter.Meter(
            sources=("nvml",), period_us=p, wait_final_s=WAIT_FINAL_S
        )
        for p in spec["periods_us"]
    }
    for m in meters.values():
        m.start()
    for size_text, n in counts.items():
        size_s = float(size_text)
        for _ in range(n):
            # A fresh phase of the waveform and of the counter's refresh grid before every window: a window that
            # began right after energy_between() returned would start just after a counter refresh.
            time.sleep(rng.uniform(0.0, PHASE_S))
            t0 = now_ns()
            hold(size_s)
            t1 = now_ns()
            out += [[name, size_s, t0, t1, fastmeter_energy_j(m, t0, t1)] for name, m in meters.items()]
            if zeus is not None:
                time.sleep(rng.uniform(0.0, PHASE_S))
                out.append(["zeus", size_s, *zeus(size_s)])
    for m in meters.values():
        m.stop()
    logging.disable(logging.WARNING)
    try:
        for size_text, n in cc_counts.items():
            for _ in range(n):
                out.append(["codecarbon", float(size_text), *codecarbon_window(float(size_text))])
    except Exception as e:  # noqa: BLE001 - same for the other optional peer
        skipped["codecarbon"] = f"{type(e).__name__}: {e}"
    print(json.dumps({"windows": out, "skipped": skipped}))


if __name__ == "__main__":
    main()
