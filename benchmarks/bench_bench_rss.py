"""`fastmeter bench`'s RSS against requests finished (issue 12): many short streamed responses at a high rate.

Each measurement starts the scripted OpenAI server (tests/servers/scripted_server.py, its own process, no gap
between tokens) and `fastmeter bench` against it in a fresh process (closed loop, `--concurrency`, random prompts
of `--output-tokens` tokens, synthetic source); this process samples the bench process's RSS (/proc) and the rows
of its streamed requests.arrow every `--every` seconds. RSS growth per request is the least-squares slope of RSS
against requests finished over the samples from `WARMUP_SHARE` of the run to its last request (the run's end,
reading back and writing the run directory, is reported apart as the peak RSS). The Meter's own memory grows with
time, not requests (raw-sample window, knots, change points, the ring's pages: docs/architecture.md, "What stays in
RAM"): the default `--period-us` 100000 keeps it small against the requests' share, and each row carries the
Meter's counts at the end (`meter`) to account for it.

The peer is the code before this change: `--before DIR` is a tree holding its `python/fastmeter` (with a built
`_core`), run in the same rounds, interleaved with the current code, for each run length.

    python -m benchmarks.bench_bench_rss --before /tmp/base --lengths 10000 40000 --rounds 3

writes benchmarks/results/bench-rss-<date>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT
from benchmarks.run import code_version

METER_COUNTS = ("samples_kept", "knots", "change_points", "telemetry_kept")
WARMUP_SHARE = 0.2  # RSS before this share of the requests finished is start-up (imports, pools, first batches)
PEAK_POLL_S = 0.1
FULL_WINDOWS_S = 65.0  # the Meter keeps 60 s of raw samples and telemetry (keep_samples_s): filled by then
SERVER = ROOT / "tests" / "servers" / "scripted_server.py"
# Runs the CLI from `tree` (the peer's code) instead of the installed package: an editable install's import hook
# would otherwise win over sys.path.
_LAUNCH = """
import sys
tree = sys.argv.pop(1)
if tree:
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable")]
    sys.path.insert(0, tree + "/python")
from fastmeter.cli import main
main(prog_name="fastmeter")
"""


def memory_bytes(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak, of this program: a fork's parent's pages are not counted, as they are in
    wait4's ru_maxrss) of a live process; empty once it is gone."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line[:5]] = int(line.split()[1]) * 1024
    except OSError:
        return {}
    return out


def streamed_rows(path: Path) -> int:
    """Rows of the requests.arrow stream (or finished file) so far."""
    import pyarrow as pa

    from fastmeter.io.stream import read_stream_batches

    try:
        with pa.OSFile(str(path)) as f:
            if f.read(6) == b"ARROW1":
                return pa.ipc.open_file(pa.OSFile(str(path))).read_all().num_rows
        _, batches = read_stream_batches(path)
        return sum(b.num_rows for b in batches)
    except (FileNotFoundError, pa.ArrowInvalid, OSError):
        return 0


def growth_b_per_request(points: list[dict]) -> float | None:
    """Least-squares slope of RSS (bytes) against requests finished; None with under 3 points."""
    if len(points) < 3 or points[-1]["requests"] <= points[0]["requests"]:
        return None
    return statistics.linear_regression([p["requests"] for p in points], [p["rss_mb"] * 2**20 for p in points]).slope


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(tree: str, n: int, args: argparse.Namespace, directory: Path) -> dict:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", str(port), "--token-gap-ms", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out = directory / "run"
    cli = [sys.executable, "-c", _LAUNCH, tree, "bench", "-o", str(out), "--allow-degraded", "--force"]
    flags = {
        "server-kind": "openai",
        "base-url": f"http://127.0.0.1:{port}",
        "model": "tiny",
        "workload-kind": "random",
        "input-tokens": "4",
        "output-tokens": str(args.output_tokens),
        "concurrency": str(args.concurrency),
        "num-requests": str(n),
        "warmup-requests": str(args.concurrency),
        "sources": "synthetic",
        "period-us": str(args.period_us),
        "metrics-enabled": "false",
    }
    cli += [x for k, v in flags.items() for x in (f"--{k}", v)]
    points, loads = [], []
    err_path = directory / "stderr.txt"
    try:
        t0 = time.monotonic()
        with err_path.open("w") as err_file:
            proc = subprocess.Popen(cli, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err_file)
        peak_mb, next_point = 0.0, t0 + args.every
        while True:
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(PEAK_POLL_S)  # the peak is polled often: the run's end (read-back) lasts seconds
            mem = memory_bytes(proc.pid)
            peak_mb = max(peak_mb, mem.get("VmHWM", 0) / 2**20)
            if time.monotonic() >= next_point and "VmRSS" in mem:
                next_point += args.every
                rows = streamed_rows(out / "requests.arrow")
                points.append({"t_s": time.monotonic() - t0, "requests": rows, "rss_mb": mem["VmRSS"] / 2**20})
                loads.append(os.getloadavg()[0])
        wall_s = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        server.terminate()
        server.wait()
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    total = n + args.concurrency
    fit = [p for p in points if WARMUP_SHARE * total <= p["requests"] < total]
    return {
        "code": "before" if tree else "after",
        "requests": n,
        "exit_code": proc.returncode,
        "stderr_tail": err_path.read_text()[-400:] if proc.returncode else "",
        "wall_s": wall_s,
        "requests_per_s": n / wall_s,
        "requests_ok": run.get("summary", {}).get("requests_ok"),
        "rss_growth_b_per_request": growth_b_per_request(fit),
        # the same from FULL_WINDOWS_S on, once the Meter's 60 s windows (raw samples, telemetry) are full
        "rss_growth_b_per_request_after_65s": growth_b_per_request([p for p in fit if p["t_s"] >= FULL_WINDOWS_S]),
        "rss_at_warmup_mb": fit[0]["rss_mb"] if fit else None,
        "rss_last_during_load_mb": fit[-1]["rss_mb"] if fit else None,
        "rss_peak_mb": peak_mb,  # VmHWM last seen: the whole run, its end (read-back, final files) included
        "meter": {k: run.get("sampler_stats", {}).get(k) for k in METER_COUNTS},
        "load_avg_1m": {"mean": statistics.fmean(loads) if loads else None, "max": max(loads, default=None)},
        "points": points,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", default="", help="tree with the peer's python/fastmeter (empty: current code only)")
    p.add_argument("--lengths", type=int, nargs="+", default=[10_000, 40_000])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--every", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--output-tokens", type=int, default=4)
    p.add_argument("--period-us", type=int, default=100_000)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    trees = [args.before, ""] if args.before else [""]
    runs = []
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.rounds):
            for n in args.lengths:
                for tree in trees:  # interleaved: before and after back to back at each length, every round
                    row = measure(tree, n, args, Path(d))
                    row["round"] = r
                    runs.append(row)
                    print(
                        f"round {r} {row['code']:>6} n={n}: {row['rss_growth_b_per_request']} B/request, "
                        f"{row['requests_per_s']:.0f} req/s, exit {row['exit_code']}",
                        file=sys.stderr,
                    )
    summary = {}
    for code in ("before", "after"):
        for n in args.lengths:
            mine = [x for x in runs if x["code"] == code and x["requests"] == n]
            if not mine:
                continue
            peaks = [x["rss_peak_mb"] for x in mine]
            summary[f"{code}-{n}"] = {"median_peak_rss_mb": statistics.median(peaks), "rounds": len(mine)}
            for key in ("rss_growth_b_per_request", "rss_growth_b_per_request_after_65s"):
                v = [x[key] for x in mine if x[key] is not None]
                if v:
                    summary[f"{code}-{n}"][key] = {"median": statistics.median(v), "range": [min(v), max(v)]}
    result = {
        "benchmark": "bench_rss",
        "date": datetime.date.today().isoformat(),
        "code_version": code_version(),
        "settings": vars(args),
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "summary": summary,
        "runs": runs,
    }
    path = Path(args.out or ROOT / "benchmarks" / "results" / f"bench-rss-{result['date']}.json")
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
