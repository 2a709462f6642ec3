"""`trace`'s RSS against run length at issue 12's load: 16 synthetic channels at 10 kHz, RSS every 30 s.

A fresh process records with the library `fastmeter trace` drives (`Recorder` + `run_trace`; the CLI has no flag
for the synthetic channel count); this process reads its RSS from /proc every `--every` seconds. Afterwards it
checks the file is complete (metadata `complete`, one row per sample the sampler took) and runs `fastmeter show` on
it in a fresh process, reporting that process's peak RSS (show reads the trace batch by batch).

    python -m benchmarks.bench_trace_rss --duration 600            (the recorded curve: 10 minutes)
    python -m benchmarks.bench_trace_rss --duration 120 --rounds 3 (repeated shorter runs: medians)

writes benchmarks/results/trace-rss-<date>.json and .png (the first round's curve). Target (issue 12): RSS flat
after warm-up, no more than 64 MB above its value at the first point past `WARMUP_S`. No peer runs here: the
previous `trace` kept every sample in RAM (~120 B/sample at its close, ~19 MB/s at this load).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, Row
from benchmarks.run import code_version

CHANNELS = 16
PERIOD_US = 100
WARMUP_S = 60.0  # the Meter's raw-sample window (keep_samples_s = 60) fills during the first minute
MAX_RSS_GROWTH_MB = 64.0

_TRACE = """
import json, sys
from dataclasses import asdict
import fastmeter
from fastmeter.recorder import Recorder
from fastmeter.tracing import run_trace
path, duration_s, channels, period_us = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
m = fastmeter.Meter("synthetic", period_us, source_options={"synthetic": {"channels": channels, "amp_w": "80"}})
meta = {"sampler": {"period_us": period_us, "sources": m.sources}, "channels": [asdict(c) for c in m.channels]}
result = run_trace(Recorder(m, path, meta, force=True), [], duration_s=duration_s)
print(json.dumps({"rows": result.rows, "samples": m.sample_count(), "stats": m.stats()}, default=str))
"""


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def run_shown(path: Path) -> tuple[float, int]:
    """`fastmeter show` on the trace in a fresh process: (peak RSS MB, exit code)."""
    p = subprocess.Popen(
        [sys.executable, "-m", "fastmeter.cli", "show", str(path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(p.pid, 0)
    return usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def measure(duration_s: float, every_s: float, directory: Path, progress=None) -> dict:
    path = directory / "trace.arrow"
    proc = subprocess.Popen(
        [sys.executable, "-c", _TRACE, str(path), str(duration_s), str(CHANNELS), str(PERIOD_US)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    t0 = time.monotonic()
    points = []
    next_t = every_s
    while proc.poll() is None:
        time.sleep(max(0.0, min(t0 + next_t - time.monotonic(), 1.0)))
        if time.monotonic() - t0 < next_t:
            continue
        rss = rss_bytes(proc.pid)
        if rss is None:
            break
        size = sum(f.stat().st_size for f in directory.iterdir())
        points.append(
            {
                "t_s": round(time.monotonic() - t0, 1),
                "rss_bytes": rss,
                "disk_bytes": size,
                "load_avg_1m": os.getloadavg()[0],
            }
        )
        if progress:
            progress(points[-1])
        next_t += every_s
    out, _ = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"the trace process failed with exit code {proc.returncode}")
    final = json.loads(out.strip().splitlines()[-1])
    from fastmeter.io import open_trace

    tb = open_trace(path)
    rows_on_disk = sum(b.num_rows for b in tb.batches())
    show_peak_mb, show_rc = run_shown(path)
    if show_rc:
        raise RuntimeError(f"`fastmeter show` failed on the trace (exit code {show_rc})")
    return {
        "channels": CHANNELS,
        "period_us": PERIOD_US,
        "duration_s": duration_s,
        "every_s": every_s,
        "points": points,
        "samples": final["samples"],
        "rows_written": final["rows"],
        "rows_on_disk": rows_on_disk,
        "complete": tb.complete,
        "file_bytes": path.stat().st_size,
        "rate_hz": final["stats"].get("rate_hz"),
        "show_peak_rss_mb": show_peak_mb,
        "show_exit_code": show_rc,
    }


def growth_mb(result: dict) -> tuple[float, float]:
    """(RSS growth after the warm-up point, in MB; that point's time)."""
    pts = result["points"]
    base = next((p for p in pts if p["t_s"] >= WARMUP_S), pts[0])
    return (max(p["rss_bytes"] for p in pts if p["t_s"] >= base["t_s"]) - base["rss_bytes"]) / 2**20, base["t_s"]


def rows(results: list[dict]) -> list[Row]:
    first = results[0]
    case = f"trace, {CHANNELS} ch x {1e3 / PERIOD_US:g} kHz, {first['duration_s']:g} s"
    loads = [p["load_avg_1m"] for r in results for p in r["points"]]
    growth = [growth_mb(r)[0] for r in results]
    show = [r["show_peak_rss_mb"] for r in results]
    end_rss = [r["points"][-1]["rss_bytes"] / 2**20 for r in results]
    note = f"{len(results)} run(s), median (range {min(growth):.1f}-{max(growth):.1f}); load avg 1m "
    note += f"{min(loads):.1f}-{max(loads):.1f}"
    complete = all(r["complete"] and r["rows_on_disk"] == r["samples"] == r["rows_written"] for r in results)
    return [
        Row(
            "trace_rss",
            case,
            f"RSS growth after t={growth_mb(first)[1]:g} s",
            statistics.median(growth),
            "MB",
            ("<=", MAX_RSS_GROWTH_MB),
            note,
        ),
        Row(
            "trace_rss",
            case,
            "RSS at end",
            statistics.median(end_rss),
            "MB",
            note=f"range {min(end_rss):.0f}-{max(end_rss):.0f}",
        ),
        Row("trace_rss", case, "file complete, one row per sample", float(complete), "bool", (">=", 1.0)),
        Row("trace_rss", case, "samples", statistics.median([r["samples"] for r in results]), "samples"),
        Row(
            "trace_rss",
            case,
            "show peak RSS",
            statistics.median(show),
            "MB",
            note=f"range {min(show):.0f}-{max(show):.0f}; file {first['file_bytes'] / 2**20:.0f} MiB",
        ),
    ]


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = result["points"]
    t_min = [p["t_s"] / 60 for p in pts]
    fig, a = plt.subplots(figsize=(7, 3.6))
    a.plot(t_min, [p["rss_bytes"] / 2**20 for p in pts], marker="o", label="trace process RSS (MB)")
    a.axhline(result["show_peak_rss_mb"], color="tab:green", linestyle="--", label="`show` on the file: peak RSS (MB)")
    a.set_ylabel("MB")
    a.set_xlabel("run time (min)")
    a.set_ylim(0, 1.3 * max(max(p["rss_bytes"] for p in pts) / 2**20, result["show_peak_rss_mb"]))
    b = a.twinx()
    disk_gib = [p["disk_bytes"] / 2**30 for p in pts]
    b.plot(t_min, disk_gib, color="grey", linestyle=":", label="trace on disk (GiB, right)")
    b.set_ylabel("GiB on disk")
    lines = a.get_legend_handles_labels(), b.get_legend_handles_labels()
    a.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], loc="lower right", fontsize="small")
    a.set_title(f"fastmeter trace: {CHANNELS} synthetic channels at {1e3 / PERIOD_US:g} kHz")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(quick: bool) -> list[Row]:
    """For benchmarks/run.py: 10 minutes, or 30 s with --quick (a smoke test, not a result)."""
    with tempfile.TemporaryDirectory() as d:
        return rows([measure(30.0 if quick else 600.0, 5.0 if quick else 30.0, Path(d))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600.0, help="seconds to trace (default 600)")
    ap.add_argument("--every", type=float, default=30.0, help="seconds between RSS points (default 30)")
    ap.add_argument("--rounds", type=int, default=1, help="runs (medians over them; the figure is the first)")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="directory for JSON and PNG")
    args = ap.parse_args()
    results = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(dir=os.environ.get("FASTMETER_BENCH_TMP")) as d:
            results.append(
                measure(
                    args.duration,
                    args.every,
                    Path(d),
                    progress=lambda p: print(json.dumps(p), file=sys.stderr, flush=True),
                )
            )
    out = {
        "rounds": results,
        "load_avg_end": os.getloadavg(),
        "code": code_version(),
        "max_rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    out["rows"] = [r.to_json() for r in rows(results)]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"trace-rss-{datetime.date.today().isoformat()}{args.tag}"
    (args.out / f"{stem}.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    plot(results[0], args.out / f"{stem}.png")
    for r in out["rows"]:
        print(f"{r['metric']}: {r['value']:.4g} {r['unit']} {r['target'] or ''} {r['verdict']}  {r['note']}")


if __name__ == "__main__":
    main()
