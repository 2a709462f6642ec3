"""Measurements for benchmarks/gpu_check.sh on a machine with a real NVIDIA GPU (see that script).

Subcommands, each writing one JSON file into --out:
  latency      per-call latency of every NVML query fastmeter uses (pynvml timing loop)   -> nvml_latency.json
  rate         highest sampling rate of the nvml source (Meter at shrinking periods)        -> nvml_rate.json
  attribution  per-request energy of torch matmul bursts on concurrent streams               -> attribution.json
  summary      prints a short table of everything in --out (calibration.json included)
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def _percentiles_us(samples_ns: list[int]) -> dict[str, float]:
    a = np.asarray(samples_ns, np.float64) * 1e-3
    return {
        "p50_us": float(np.percentile(a, 50)),
        "p99_us": float(np.percentile(a, 99)),
        "mean_us": float(a.mean()),
        "max_us": float(a.max()),
        "n": int(a.size),
    }


def latency(out: Path, calls: int) -> dict[str, Any]:
    import pynvml as p

    p.nvmlInit()
    try:
        h = p.nvmlDeviceGetHandleByIndex(0)
        queries = {
            "nvmlDeviceGetFieldValues[83]": lambda: p.nvmlDeviceGetFieldValues(h, [83]),
            "nvmlDeviceGetFieldValues[186]": lambda: p.nvmlDeviceGetFieldValues(h, [186]),
            "nvmlDeviceGetFieldValues[185]": lambda: p.nvmlDeviceGetFieldValues(h, [185]),
            "nvmlDeviceGetFieldValues[83,186,185]": lambda: p.nvmlDeviceGetFieldValues(h, [83, 186, 185]),
            "nvmlDeviceGetTotalEnergyConsumption": lambda: p.nvmlDeviceGetTotalEnergyConsumption(h),
            "nvmlDeviceGetPowerUsage": lambda: p.nvmlDeviceGetPowerUsage(h),
            "nvmlDeviceGetCount_v2": p.nvmlDeviceGetCount,
            "nvmlDeviceGetHandleByIndex_v2": lambda: p.nvmlDeviceGetHandleByIndex(0),
            "nvmlDeviceGetName": lambda: p.nvmlDeviceGetName(h),
            "nvmlDeviceGetUUID": lambda: p.nvmlDeviceGetUUID(h),
        }
        result: dict[str, Any] = {"gpu_name": p.nvmlDeviceGetName(h), "driver": p.nvmlSystemGetDriverVersion()}
        for name, fn in queries.items():
            try:
                fn()
            except p.NVMLError as e:
                result[name] = {"error": str(e)}
                continue
            times = []
            for _ in range(calls):
                t0 = time.perf_counter_ns()
                fn()
                times.append(time.perf_counter_ns() - t0)
            result[name] = _percentiles_us(times)
        fv = p.nvmlDeviceGetFieldValues(h, [83, 186, 185])
        result["driver_reported_latency_us"] = {str(f.fieldId): int(f.latencyUsec) for f in fv}
    finally:
        p.nvmlShutdown()
    _write(out / "nvml_latency.json", result)
    return result


def rate(out: Path, seconds: float) -> dict[str, Any]:
    import fastmeter
    from fastmeter.errors import FastmeterError

    rows: list[dict[str, Any]] = []
    for period_us in (2000, 1000, 500, 250, 100, 50, 20):
        try:
            with fastmeter.Meter(("nvml",), period_us) as m:
                time.sleep(seconds)
        except FastmeterError as e:
            rows.append(
                {
                    "period_us": period_us,
                    "nominal_hz": 1e6 / period_us,
                    "rate_hz": 0.0,
                    "jitter_p99_us": float("nan"),
                    "missed": None,
                    "polls": 0,
                    "dropped": 0,
                    "errors": str(e),
                }
            )
            continue
        s = m.stats()
        rows.append(
            {
                "period_us": period_us,
                "nominal_hz": 1e6 / period_us,
                "rate_hz": s["rate_hz"],
                "jitter_p99_us": s["jitter_p99_us"],
                "missed": s["missed"],
                "polls": s["polls"],
                "dropped": s["dropped"],
                "errors": s["errors"],
            }
        )
    ok = [r for r in rows if r["rate_hz"] >= 0.95 * r["nominal_hz"] and not r["errors"]]
    result = {
        "seconds_each": seconds,
        "rows": rows,
        "highest_sustained_hz": max((r["rate_hz"] for r in ok), default=None),
    }
    _write(out / "nvml_rate.json", result)
    return result


def _burst_stream(gpu: int, plan: list[tuple[float, float]], t_start: float, log: list[tuple[int, int]]) -> None:
    """Plays (gap_s, burst_s) pairs on its own CUDA stream; logs each burst's (start_ns, end_ns)."""
    import torch

    dev = torch.device("cuda", gpu)
    stream = torch.cuda.Stream(device=dev)
    a = torch.randn(2048, 2048, device=dev, dtype=torch.float16)
    t = t_start
    with torch.cuda.stream(stream):
        for gap_s, burst_s in plan:
            t += gap_s
            time.sleep(max(0.0, t - time.monotonic()))
            s_ns = time.monotonic_ns()
            while time.monotonic() < t + burst_s:
                for _ in range(4):
                    torch.matmul(a, a)
                stream.synchronize()
            log.append((s_ns, time.monotonic_ns()))
            t = time.monotonic()


def attribute_bursts(meter: Any, start: np.ndarray, end: np.ndarray, delay_ns: int) -> dict[str, Any]:
    """Time-share attribution of the Meter's curve to bursts, as read ("raw") and shifted by the counter's
    measured delay ("delay": work in [s, e] shows in the curve over [s + delay, e + delay]); a linear fit of
    energy against burst length says how well per-request energy tracks the work."""
    from fastmeter.attribution import attribute, event_times, total_curve

    out: dict[str, Any] = {"requests": int(start.size), "method": "fastmeter.attribution time-share"}
    dur_s = (end - start) * 1e-9
    for key, d in (("raw", 0), ("delay", delay_ns)):
        t_ns = event_times(start + d, end + d)
        e_j = total_curve(meter, t_ns)  # the Meter's own curve, at the cut instants
        energy = attribute(t_ns, e_j, start + d, end + d).energy_j
        slope, intercept = np.polyfit(dur_s, energy, 1)
        pred = slope * dur_s + intercept
        r2 = 1 - float(np.sum((energy - pred) ** 2) / np.sum((energy - energy.mean()) ** 2))
        span_j = float(e_j[-1] - e_j[0])
        out[key] = {
            "j_per_s_of_burst": float(slope),
            "intercept_j": float(intercept),
            "r2_vs_duration": r2,
            "attributed_j": float(energy.sum()),
            "span_energy_j": span_j,
            "median_j": float(statistics.median(energy)),
        }
    return out


def attribution(out: Path, streams: int, seconds: float, calibration: Path | None) -> dict[str, Any]:
    import fastmeter

    rng = np.random.default_rng(0)
    plans = []
    for _ in range(streams):
        plan, total = [], 0.0
        while total < seconds:
            gap_s, burst_s = float(rng.uniform(0.02, 0.3)), float(rng.uniform(0.05, 0.6))
            plan.append((gap_s, burst_s))
            total += gap_s + burst_s
        plans.append(plan)
    logs: list[list[tuple[int, int]]] = [[] for _ in range(streams)]
    with fastmeter.Meter(("nvml",), 1000, source_options={"nvml": {"gpus": "0"}}) as m:
        with m.window("idle") as idle:
            time.sleep(1.0)
        t_start = time.monotonic() + 0.2
        threads = [threading.Thread(target=_burst_stream, args=(0, plans[i], t_start, logs[i])) for i in range(streams)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        time.sleep(0.5)  # the counter publishes the end of the last burst
    start = np.array([s for log in logs for s, _ in log], np.int64)
    end = np.array([e for log in logs for _, e in log], np.int64)
    delay_ns = 0
    if calibration is not None and calibration.is_file():
        cal = json.loads(calibration.read_text())
        f = cal["gpus"][0]["fields"].get("energy_counter")
        delay_ns = round(f["delay_ms"] * 1e6) if f else 0
    results: dict[str, Any] = {
        "streams": streams,
        "idle_power_w": idle.avg_power_w,
        "counter_delay_ms_used": delay_ns * 1e-6,
        **attribute_bursts(m, start, end, delay_ns),
    }
    _write(out / "attribution.json", results)
    return results


def summary(out: Path) -> None:
    def load(name: str) -> dict[str, Any] | None:
        path = out / name
        return json.loads(path.read_text()) if path.is_file() else None

    print("== gpu_check summary ==")
    if lat := load("nvml_latency.json"):
        print(f"{lat['gpu_name']}  driver {lat['driver']}")
        for k, v in lat.items():
            if isinstance(v, dict) and "p50_us" in v:
                print(f"  {k:<40} p50 {v['p50_us']:8.1f} us  p99 {v['p99_us']:8.1f} us")
    if r := load("nvml_rate.json"):
        for row in r["rows"]:
            print(
                f"  nvml source @ {row['period_us']:>5} us: {row['rate_hz']:8.0f} Hz  "
                f"p99 jitter {row['jitter_p99_us']:7.1f} us  missed {row['missed']}"
            )
        print(f"  highest sustained rate: {r['highest_sustained_hz']} Hz")
    if cal := load("calibration.json"):
        for g in cal["gpus"]:
            for name, f in g["fields"].items():
                print(
                    f"  gpu{g['index']} {name:<15} update {f['update_period_ms']:7.1f} ms  window "
                    f"{f['averaging_window_ms']:7.1f} ms  delay {f['delay_ms']:6.1f} ms"
                )
            print(f"  gpu{g['index']} instant power vs counter: {g['counter_vs_power_pct']} %")
    if a := load("attribution.json"):
        for key in ("raw", "delay"):
            x = a[key]
            print(
                f"  attribution[{key}] {a['requests']} req on {a['streams']} streams: "
                f"{x['j_per_s_of_burst']:.1f} J/s, R2 {x['r2_vs_duration']:.3f}, "
                f"attributed {x['attributed_j']:.0f} of {x['span_energy_j']:.0f} J"
            )
    if st := load("stages.json"):
        print("  stages: " + ", ".join(f"{k}={v}" for k, v in st.items()))


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=("latency", "rate", "attribution", "summary"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--streams", type=int, default=3)
    ap.add_argument("--calibration", type=Path, default=None)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stage == "latency":
        latency(args.out, args.calls)
    elif args.stage == "rate":
        rate(args.out, args.seconds)
    elif args.stage == "attribution":
        attribution(args.out, args.streams, args.seconds, args.calibration)
    else:
        summary(args.out)


if __name__ == "__main__":
    main()
