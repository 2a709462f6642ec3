"""Does telemetry disturb energy sampling? Sampler lateness p99 and process CPU per second with the telemetry
schedule at 20 Hz vs off, the same meter configuration in the same run: 2 emulated GPUs (18 series each: utilization,
clocks, temperatures, power limit, throttle reasons and counters, PCIe, memory) plus CPU utilization, energy polled
at 1 kHz.

Cases alternate within each round (off, on; the order flips every round so neither always runs first); the ratio
on/off is taken within a round and the median over rounds reported with its range and the load average. CPU is
this process's CPU time over the measured seconds (sampler thread, drain thread, an idle main thread). The emulator
answers a telemetry call in well under a microsecond; a real driver takes microseconds to hundreds of them per call
(FACTS.md), so this measures fastmeter's own cost of the schedule, not the driver's.

Standalone: `python -m benchmarks.bench_telemetry [--rounds N --seconds S]` writes results/telemetry-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time

import fastmeter
from benchmarks.common import ROOT, Emulator, Row, median

ROUNDS = 5
TELEMETRY_HZ = 20.0
PERIOD_US = 1000
MAX_LATENESS_RATIO = 1.25  # within run-to-run noise of p99 on a shared 2-core VM
MAX_CPU_RATIO = 1.25


def measure(telemetry_hz: float, seconds: float) -> dict[str, float]:
    cpu0 = time.process_time()
    with fastmeter.Meter(sources=("nvml",), period_us=PERIOD_US, telemetry_hz=telemetry_hz) as m:
        time.sleep(seconds)
    cpu_s = time.process_time() - cpu0
    s = m.stats()
    return {
        "lateness_p99_us": float(s["jitter_p99_us"]),
        "lateness_p50_us": float(s["jitter_p50_us"]),
        "cpu_ms_per_s": cpu_s / seconds * 1e3,
        "rate_hz": float(s["rate_hz"]),
        "missed": float(s["missed"]),
        "telemetry_polls": float(s["telemetry_polls"]),
        "telemetry_series": float(s["telemetry_series"]),
        "telemetry_read_p99_us": float(s["telemetry_read_p99_us"]),
    }


def rounds(n: int, seconds: float) -> tuple[list[dict[str, dict[str, float]]], list[float]]:
    out, load = [], [os.getloadavg()[0]]
    with Emulator(gpus=2):
        for k in range(n):
            order = ("off", "on") if k % 2 == 0 else ("on", "off")
            out.append({case: measure(TELEMETRY_HZ if case == "on" else 0.0, seconds) for case in order})
            load.append(os.getloadavg()[0])
    return out, load


def rows_of(results: list[dict[str, dict[str, float]]], load: list[float], seconds: float) -> list[Row]:
    def note(values: list[float]) -> str:
        return (
            f"median of {len(values)} interleaved rounds x {seconds:g} s, range {min(values):.3g}-{max(values):.3g}; "
            f"load average {min(load):.1f}-{max(load):.1f}"
        )

    rows = []
    for case in ("off", "on"):
        label = f"2 emulated GPUs @ 1 kHz, telemetry {case if case == 'off' else f'{TELEMETRY_HZ:g} Hz'}"
        for key, unit in (("lateness_p99_us", "µs"), ("cpu_ms_per_s", "ms/s"), ("telemetry_read_p99_us", "µs")):
            if case == "off" and key == "telemetry_read_p99_us":
                continue
            vals = [r[case][key] for r in results]
            rows.append(Row("telemetry", label, key.replace("_", " "), median(vals), unit, None, note(vals)))
    for key, bound in (("lateness_p99_us", MAX_LATENESS_RATIO), ("cpu_ms_per_s", MAX_CPU_RATIO)):
        ratios = [r["on"][key] / r["off"][key] for r in results]
        rows.append(
            Row(
                "telemetry",
                "on / off (same round)",
                f"{key.replace('_', ' ')} ratio",
                median(ratios),
                "x",
                ("<=", bound),
                note(ratios),
            )
        )
    return rows


def run(quick: bool) -> list[Row]:
    seconds = 0.5 if quick else 4.0
    results, load = rounds(3 if quick else ROUNDS, seconds)
    return rows_of(results, load, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    results, load = rounds(args.rounds, args.seconds)
    rows = rows_of(results, load, args.seconds)
    out = ROOT / "benchmarks" / "results" / f"telemetry-{datetime.date.today().isoformat()}.json"
    out.write_text(json.dumps({"rounds": results, "load_average": load, "rows": [r.to_json() for r in rows]}, indent=1))
    for r in rows:
        print(f"{r.case:<48} {r.metric:<28} {r.value:10.3f} {r.unit:<5} {r.verdict:<4} {r.note}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
