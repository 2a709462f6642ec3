"""Runs fastmeter's benchmarks, prints a markdown table and writes benchmarks/results/<machine>-<date>.json.

    python -m benchmarks [--quick] [--only NAME ...]      (from the repository root)
    python benchmarks/run.py [--quick] [--only NAME ...]
    python -m benchmarks --show benchmarks/results/<machine>-<date>.json     (the table of a committed result)

Targets are printed as PASS/MISS next to the measured values; nothing here asserts. Numbers from a shared or
virtual machine are noisy: every benchmark repeats its measurement and says how it summarises the repeats.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable (benchmarks, tests)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, Row
from benchmarks.external import SCRIPTS, run_script

BENCHMARKS = {
    "sampler": "benchmarks.bench_sampler",
    "ring": "benchmarks.bench_ring",
    "drain": "benchmarks.bench_drain",
    "cpu_cost": "benchmarks.bench_cpu_cost",
    "interference": "benchmarks.bench_interference",
    "accuracy": "benchmarks.bench_accuracy",
    "memory": "benchmarks.bench_memory",
    "trace_memory": "benchmarks.bench_trace_memory",
    "bound": "benchmarks.bench_bound",
    "request_bound": "benchmarks.bench_request_bound",
    "schedule": "benchmarks.bench_schedule",
    "telemetry": "benchmarks.bench_telemetry",
    "batches": "benchmarks.bench_batches",
    "cluster": "benchmarks.bench_cluster",  # needs fastmeter[ray]; skipped (with the reason) without it
    "activity": "benchmarks.bench_activity",
    "trace_rss": "benchmarks.bench_trace_rss",
    "attribution_stream": "benchmarks.bench_attribution_stream",
    "history_queries": "benchmarks.bench_history_queries",
}


def fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    a = abs(value)
    return f"{value:,.0f}" if a >= 1000 else f"{value:.3g}" if a >= 0.01 or a == 0 else f"{value:.2e}"


def markdown(rows: list[Row]) -> str:
    lines = [
        "| benchmark | case | metric | value | unit | target | verdict |",
        "|---|---|---|---:|---|---|---|",
    ]
    for r in rows:
        target = "" if r.target is None else f"{r.target[0]} {r.target[1]:g}"
        cells = (r.bench, r.case, r.metric, fmt(r.value), r.unit, target, r.verdict)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def code_version() -> str:
    """The commit measured, "+dirty" when the working tree differs from it; "" outside a git checkout."""
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return ""
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine() -> dict[str, object]:
    return {
        "node": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor(),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs (a smoke test of the suite, not numbers)")
    ap.add_argument(
        "--only",
        action="append",
        choices=sorted([*BENCHMARKS, *SCRIPTS]),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join([*BENCHMARKS, *SCRIPTS])}",
    )
    ap.add_argument(
        "--out",
        type=Path,
        help="directory for the results JSON (default: benchmarks/results; build/benchmarks with --quick)",
    )
    ap.add_argument("--show", type=Path, metavar="JSON", help="print the table of a results file and exit")
    args = ap.parse_args(argv)
    if args.show:
        print(markdown([Row.from_json(r) for r in json.loads(args.show.read_text())["rows"]]))
        return
    if args.out is None:  # quick numbers are a smoke test: keep them out of the committed results
        args.out = ROOT / ("build/benchmarks" if args.quick else "benchmarks/results")
    names = args.only or [*BENCHMARKS, *SCRIPTS]
    rows: list[Row] = []
    report: dict[str, object] = {"machine": machine(), "code": code_version(), "quick": args.quick}
    report["load_avg_start"] = os.getloadavg()
    skipped: dict[str, str] = {}
    seconds: dict[str, float] = {}
    external: dict[str, str] = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        try:
            if name in SCRIPTS:
                external[name] = run_script(name, args.quick)
            else:
                rows += importlib.import_module(BENCHMARKS[name]).run(args.quick)
        except Exception as e:  # noqa: BLE001 - one broken benchmark must not lose the others' numbers
            skipped[name] = f"{type(e).__name__}: {e}"
            print(f"  {name} skipped: {skipped[name]}", file=sys.stderr)
            if not isinstance(e, FileNotFoundError):  # a script absent from this checkout needs no traceback
                traceback.print_exc(limit=3, file=sys.stderr)
        seconds[name] = round(time.perf_counter() - t, 1)
    report.update(
        load_avg_end=os.getloadavg(),
        seconds=seconds,
        skipped=skipped,
        rows=[r.to_json() for r in rows],
        external=external,
    )
    print(markdown(rows))
    for name, text in external.items():
        print(f"\n{name} (benchmarks/{SCRIPTS[name][0]}):\n{text}")
    for name, why in skipped.items():
        print(f"\nskipped {name}: {why}")
    args.out.mkdir(parents=True, exist_ok=True)
    # A partial run (--only) gets its own file, so it never overwrites the full run of the day.
    stem = f"{platform.node()}-{datetime.date.today().isoformat()}" + "".join(f"-{n}" for n in args.only or [])
    path = args.out / f"{stem}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", file=sys.stderr)


if __name__ == "__main__":
    main()
