"""Window queries into the thinned history: history on disk (the default: `pread` of one group per lookup) vs the
same history in RAM (`history_dir=""`), the peer, on the same code and load.

Each round runs a fresh Meter per mode (16 synthetic channels at 10 kHz, a 2 s raw-sample window, history kept at
1 ms so it fills hundreds of blocks in seconds) for `--seconds`, stops it, then times `--queries` 100 ms
`energy_between` windows at random places in the history (a stopped meter answers at once: no drain competes, so
the figure is the lookup's own cost). Modes alternate, order flipped every round; ratios are taken within a round.

    python -m benchmarks.bench_history_queries --rounds 3   (writes results/history-queries-<date>.json)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import statistics
import sys
import tempfile
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
MAX_P99_US = 1000.0


def measure(mode: str, seconds: float, queries: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory(dir=os.environ.get("FASTMETER_BENCH_TMP")) as d:
        m = fastmeter.Meter(
            "synthetic",
            PERIOD_US,
            source_options={"synthetic": {"channels": str(CHANNELS), "amp_w": "80"}},
            keep_samples_s=2.0,
            knot_resolution_us=1000,
            history_dir=d if mode == "disk" else "",
        )
        with m:
            time.sleep(seconds)
        s = m.stats()
        lo, hi = m.start_ns + 200_000_000, m.stop_ns - 4_000_000_000  # before the window: history only
        rng = random.Random(seed)
        lat = []
        for _ in range(queries):
            t0 = rng.randint(lo, hi)
            t = time.perf_counter_ns()
            m.energy_between(t0, t0 + 100_000_000)
            lat.append((time.perf_counter_ns() - t) / 1e3)
        m.close()
    return {
        "mode": mode,
        "p50_us": float(np.percentile(lat, 50)),
        "p99_us": float(np.percentile(lat, 99)),
        "max_us": max(lat),
        "history_disk_bytes": s["history_disk_bytes"],
        "history_ram_bytes": s["history_ram_bytes"],
        "knots": s["knots"],
        "load_avg_1m": os.getloadavg()[0],
    }


def rows(rounds: list[list[dict]]) -> list[Row]:
    by = {mode: [next(r for r in rnd if r["mode"] == mode) for rnd in rounds] for mode in ("disk", "ram")}
    loads = [r["load_avg_1m"] for rnd in rounds for r in rnd]
    note = f"{len(rounds)} rounds, load avg 1m {min(loads):.1f}-{max(loads):.1f}"
    out = []
    for mode, label in (("disk", "history on disk"), ("ram", 'history in RAM (history_dir="", peer)')):
        for key in ("p50_us", "p99_us"):
            v = [r[key] for r in by[mode]]
            target = ("<=", MAX_P99_US) if key == "p99_us" else None
            out.append(
                Row(
                    "history_queries",
                    label,
                    f"window query {key[:3]}",
                    statistics.median(v),
                    "µs",
                    target,
                    f"range {min(v):.0f}-{max(v):.0f}; {note}",
                )
            )
    ratio = [d["p99_us"] / r["p99_us"] for d, r in zip(by["disk"], by["ram"])]
    out.append(
        Row(
            "history_queries",
            "disk / RAM",
            "p99 ratio within a round",
            statistics.median(ratio),
            "x",
            None,
            f"range {min(ratio):.2f}-{max(ratio):.2f}",
        )
    )
    return out


def run(quick: bool) -> list[Row]:
    """For benchmarks/run.py: 3 rounds of 20 s per mode, or one of 5 s with --quick (a smoke test)."""
    n, seconds = (1, 5.0) if quick else (3, 20.0)
    return rows(
        [
            [measure(mode, seconds, 2000, i) for mode in (("disk", "ram") if i % 2 == 0 else ("ram", "disk"))]
            for i in range(n)
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0, help="run time of each Meter (default 20)")
    ap.add_argument("--queries", type=int, default=2000, help="windows timed per Meter (default 2000)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="directory for the JSON")
    args = ap.parse_args()
    rounds = []
    for i in range(args.rounds):
        modes = ("disk", "ram") if i % 2 == 0 else ("ram", "disk")
        rounds.append([measure(mode, args.seconds, args.queries, i) for mode in modes])
        print(json.dumps(rounds[-1]), file=sys.stderr, flush=True)
    out = {"rounds": rounds, "code": code_version(), "rows": [r.to_json() for r in rows(rounds)]}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"history-queries-{datetime.date.today().isoformat()}.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    for r in out["rows"]:
        print(f"{r['case']}: {r['metric']} {r['value']:.4g} {r['unit']} {r['verdict']}  {r['note']}")


if __name__ == "__main__":
    main()
