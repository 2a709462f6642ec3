"""One round of the accuracy sweep in a fresh interpreter (pynvml inside Zeus finds the emulator only through
LD_LIBRARY_PATH at load time): a fastmeter Meter polls every emulated GPU at 1 kHz while Zeus measures windows of
several lengths, overlapping, at random instants; afterwards fastmeter answers the very same windows with
`Meter.span`.

The window of a task runs from the instant Zeus's `begin_window` returned (t0_ns) to the instant `end_window` was
called (t1_ns): what a user measures. Each GPU of the emulator is one (load, power phase) case, so one window is
measured at every phase at once. Prints one JSON line: {"channels": [name], "windows": [[length_s, t0_ns, t1_ns,
zeus_j | null, fastmeter_j, bound_j]], "skipped": {tool: reason}, "stats": {...}} (per-GPU lists in channel order;
null for a value fastmeter could not give); the parent computes the analytic truth from the emulator's model.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import time

import fastmeter

now_ns = time.monotonic_ns
SETTLE_S = 0.3  # after the last window: every counter refreshes (100 ms) past its end before the meter stops


def sleep_until(t_ns: int) -> None:
    left_s = (t_ns - now_ns()) * 1e-9
    if left_s > 0:
        time.sleep(left_s)


def zeus_monitor(gpus: int) -> tuple[object | None, str]:
    try:
        from zeus.monitor import ZeusMonitor

        return ZeusMonitor(gpu_indices=list(range(gpus)), cpu_indices=[]), ""
    except Exception as e:  # noqa: BLE001 - an optional peer: a failure to set it up is reported, not fatal
        return None, f"{type(e).__name__}: {e}"


def schedule(counts: dict[str, int], round_s: float, seed: int) -> list[tuple[float, int, str, float]]:
    """(offset_s, order, key, length_s) events: a begin and an end per window, windows placed uniformly at random
    in the round (they overlap; Zeus keeps named windows apart). order puts a begin before an end at one instant."""
    rng = random.Random(seed)
    events: list[tuple[float, int, str, float]] = []
    for length_text, n in counts.items():
        length_s = float(length_text)
        for i in range(n):
            start_s = rng.uniform(0.0, round_s - length_s)
            key = f"{length_text}/{i}"
            events += [(start_s, 0, key, length_s), (start_s + length_s, 1, key, length_s)]
    return sorted(events)


def main() -> None:
    spec = json.loads(sys.argv[1])
    gpus, round_s = int(spec["gpus"]), float(spec["round_s"])
    events = schedule({k: int(v) for k, v in spec["windows"].items()}, round_s, int(spec["seed"]))
    logging.disable(logging.WARNING)  # Zeus warns about every 0 J window (counter not refreshed): expected here
    zeus, why = zeus_monitor(gpus)
    skipped = {} if zeus is not None else {"zeus": why}
    meter = fastmeter.Meter(sources=("nvml",), period_us=1000)
    meter.start()
    time.sleep(float(spec["warmup_s"]))
    open_windows: dict[str, int] = {}
    done: list[tuple[float, int, int, list[float] | None]] = []
    base_ns = now_ns()
    for offset_s, is_end, key, length_s in events:
        sleep_until(base_ns + round(offset_s * 1e9))
        if not is_end:
            if zeus is not None:
                zeus.begin_window(key, sync_execution=False)  # type: ignore[attr-defined]
            open_windows[key] = now_ns()
            continue
        t1 = now_ns()
        zeus_j = None
        if zeus is not None:
            m = zeus.end_window(key, sync_execution=False)  # type: ignore[attr-defined]
            zeus_j = [float(m.gpu_energy[g]) for g in range(gpus)]
        done.append((length_s, open_windows.pop(key), t1, zeus_j))
    time.sleep(SETTLE_S)
    meter.stop()
    channels = [f"gpu{g}" for g in range(gpus)]
    out = []
    for length_s, t0, t1, zeus_j in done:
        try:
            span = meter.span(t0, t1)
            energy = [span.energy_j[c] for c in channels]
            bound = [span.bound_j[c] for c in channels]
        except fastmeter.errors.SpanError:  # the sampler never reached the window: counted as failed
            energy = bound = [math.nan] * gpus
        out.append([length_s, t0, t1, zeus_j, *([None if math.isnan(x) else x for x in v] for v in (energy, bound))])
    stats = meter.stats()
    keep = ("rate_hz", "jitter_p50_us", "jitter_p99_us", "missed", "dropped", "polls")
    print(
        json.dumps({"channels": channels, "windows": out, "skipped": skipped, "stats": {k: stats.get(k) for k in keep}})
    )


if __name__ == "__main__":
    main()
