"""Memory and query latency against run length (issue 12): does a long run stay flat?

A synthetic source with 16 channels at 10 kHz (160k samples/s: the sample count of ~2 hours of 8 GPUs + CPU at
1 kHz in 10 minutes) runs with the Meter's defaults (keep_samples_s=60, knot_resolution_us=10000). Every
`--every` seconds it records the process RSS, what the Meter keeps (raw samples, knots, the error bound's change
points) and the latency of a burst of window queries, half over 100 ms ending 50 ms ago and half over random spans
of the whole run (the decimated past).

    python -m benchmarks.bench_memory --duration 600        (the recorded run: ~10 minutes)
    python -m benchmarks.bench_memory --duration 60 --every 10     (a smoke run)

writes benchmarks/results/memory-<date>.json and memory-<date>.png. Targets (issue 12): RSS no more than 64 MB above
its value at the first minute, and window-query p99 <= 1 ms at every point. There is no peer in this run: the old
record grew without bound (~68 bytes a sample, ~11 MB/s here), so the comparison is with the run's own first minute.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

import fastmeter
from benchmarks.common import ROOT, Row
from benchmarks.run import code_version

CHANNELS = 16
PERIOD_US = 100
QUERIES = 200  # per point: half recent, half anywhere in the run
WARMUP_S = 60.0  # RSS growth is measured from here (the raw-sample window fills during the first minute)
MAX_RSS_GROWTH_MB = 64.0
MAX_QUERY_P99_US = 1000.0


def query_burst(m: fastmeter.Meter, rng: random.Random) -> tuple[list[float], list[float]]:
    """Latency (µs) of 100 ms window queries ending 50 ms ago, and over random 100 ms spans of the whole run."""
    recent, old = [], []
    for i in range(QUERIES):
        now = m.now_ns()
        if i % 2 == 0:
            # 50 ms back: polled already even when this loaded 2-core box delays the sampler, so the figure is the
            # query's own cost rather than the wait for the next poll (energy_between waits for a poll past t1).
            t1 = now - 50_000_000
        else:
            t1 = rng.randint(m.start_ns + 100_000_000, now - 1_000_000)
        t = time.perf_counter_ns()
        m.energy_between(t1 - 100_000_000, t1)
        (recent if i % 2 == 0 else old).append((time.perf_counter_ns() - t) / 1e3)
    return recent, old


def measure(duration_s: float, every_s: float, progress=None, history_dir: str | None = None) -> dict:
    m = fastmeter.Meter(
        "synthetic",
        PERIOD_US,
        source_options={"synthetic": {"channels": str(CHANNELS), "amp_w": "80"}},
        history_dir=history_dir,
    )
    rng = random.Random(12)
    points = []
    with m:
        t0 = time.monotonic()
        next_t = 1.0  # queries need 100 ms of record behind them
        while True:
            time.sleep(max(0.0, t0 + next_t - time.monotonic()))
            m.sample_count()  # drain, so the point sees the record as of now
            recent, old = query_burst(m, rng)
            s = m.stats()
            both = recent + old
            points.append(
                {
                    "t_s": round(time.monotonic() - t0, 2),
                    "rss_bytes": s["rss_bytes"],
                    "samples": m.sample_count(),
                    "samples_kept": s["samples_kept"],
                    "knots": s["knots"],
                    "change_points": s["change_points"],
                    # RAM of the bounded stores, and the thinned history in its file (docs/architecture.md)
                    "store_bytes": s["samples_bytes"] + s["knots_bytes"] + s["change_points_bytes"],
                    "history_disk_bytes": s["history_disk_bytes"],
                    "history_ram_bytes": s["history_ram_bytes"],
                    "query_p50_us": float(np.percentile(both, 50)),
                    "query_p99_us": float(np.percentile(both, 99)),
                    "recent_p99_us": float(np.percentile(recent, 99)),
                    "old_p99_us": float(np.percentile(old, 99)),
                    "rate_hz": s["rate_hz"],
                    "missed": s["missed"],
                    "dropped": s["dropped"],
                    "load_avg_1m": os.getloadavg()[0],
                }
            )
            if progress:
                progress(points[-1])
            if next_t >= duration_s:
                break
            next_t = min(every_s * (1 + next_t // every_s), duration_s)
    return {
        "channels": CHANNELS,
        "period_us": PERIOD_US,
        "duration_s": duration_s,
        "every_s": every_s,
        "queries_per_point": QUERIES,
        "points": points,
    }


def rows(result: dict) -> list[Row]:
    pts = result["points"]
    base = min(pts, key=lambda p: abs(p["t_s"] - WARMUP_S)) if result["duration_s"] >= WARMUP_S else pts[0]
    after = [p for p in pts if p["t_s"] >= base["t_s"]]
    growth_mb = (max(p["rss_bytes"] for p in after) - base["rss_bytes"]) / 2**20
    case = f"{result['channels']} ch x {1e3 / result['period_us']:g} kHz, {result['duration_s']:g} s"
    loads = [p["load_avg_1m"] for p in pts]
    note = (
        f"load avg 1m {min(loads):.1f}-{max(loads):.1f}; {len(pts)} points, {result['queries_per_point']} queries each"
    )
    p99 = [p["query_p99_us"] for p in pts]
    return [
        Row("memory", case, f"RSS growth after t={base['t_s']:g} s", growth_mb, "MB", ("<=", MAX_RSS_GROWTH_MB), note),
        Row("memory", case, "RSS at end", pts[-1]["rss_bytes"] / 2**20, "MB"),
        Row("memory", case, "window query p99 (worst point)", max(p99), "µs", ("<=", MAX_QUERY_P99_US)),
        Row(
            "memory", case, "window query p50 (median point)", float(np.median([p["query_p50_us"] for p in pts])), "µs"
        ),
        Row("memory", case, "query p99 last / first point", p99[-1] / p99[0], "x"),
        Row("memory", case, "samples", pts[-1]["samples"], "samples"),
    ]


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = result["points"]
    t_min = [p["t_s"] / 60 for p in pts]
    fig, (a, b) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    a.plot(t_min, [p["rss_bytes"] / 2**20 for p in pts], marker="o", label="process RSS")
    a.plot(t_min, [p["samples_kept"] * 28 / 2**20 for p in pts], marker=".", label="raw samples kept (28 B each)")
    a.plot(t_min, [p["knots"] * 25 / 2**20 for p in pts], marker=".", label="knots kept (≤ 25 B each)")
    a.plot(t_min, [p["change_points"] * 24 / 2**20 for p in pts], marker=".", label="change points (24 B each)")
    a.set_ylabel("MB")
    a.set_ylim(0, 1.45 * max(p["rss_bytes"] for p in pts) / 2**20)  # room for the legend above the curves
    a.set_title(f"{result['channels']} synthetic channels at {1e3 / result['period_us']:g} kHz, Meter defaults")
    c = a.twinx()
    c.plot(t_min, [p["rate_hz"] / 1e3 for p in pts], color="grey", linestyle=":", label="poll rate (kHz, right)")
    c.set_ylabel("kHz achieved")
    c.set_ylim(0, 1.45e3 / result["period_us"])
    lines = a.get_legend_handles_labels(), c.get_legend_handles_labels()
    a.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], loc="upper center", ncol=2, fontsize="small")
    b.plot(t_min, [p["query_p50_us"] for p in pts], marker="o", label="window query p50")
    b.plot(t_min, [p["query_p99_us"] for p in pts], marker="o", label="window query p99")
    b.axhline(MAX_QUERY_P99_US, color="grey", linestyle="--", label="p99 target")
    b.set_yscale("log")
    b.set_ylabel("µs")
    b.set_xlabel("run time (min)")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(quick: bool) -> list[Row]:
    """For benchmarks/run.py: the full 10 minutes, or 30 s with --quick (a smoke test, not a result)."""
    return rows(measure(30.0 if quick else 600.0, 5.0 if quick else 30.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600.0, help="seconds to run (default 600)")
    ap.add_argument("--every", type=float, default=30.0, help="seconds between points (default 30)")
    ap.add_argument("--tag", default="", help="suffix of the result files")
    ap.add_argument("--history-dir", default=None, help='the Meter\'s history_dir ("" keeps the history in RAM)')
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="directory for JSON and PNG")
    args = ap.parse_args()
    result = measure(
        args.duration,
        args.every,
        progress=lambda p: print(json.dumps(p), file=sys.stderr, flush=True),
        history_dir=args.history_dir,
    )
    result["history_dir"] = args.history_dir
    result["load_avg_end"] = os.getloadavg()
    result["code"] = code_version()
    result["fastmeter_version"] = fastmeter.__version__
    result["rows"] = [r.to_json() for r in rows(result)]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"memory-{datetime.date.today().isoformat()}{args.tag}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    plot(result, args.out / f"{stem}.png")
    for r in result["rows"]:
        print(f"{r['metric']}: {r['value']:.4g} {r['unit']} {r['target'] or ''} {r['verdict']}  {r['note']}")


if __name__ == "__main__":
    main()
