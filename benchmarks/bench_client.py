"""The load generator's client: capacity and timestamp fidelity, against vLLM's own benchmark client.

Server: ``tests/emulators/stamp_server.c`` (C, one thread, epoll), which writes each chunk's CLOCK_MONOTONIC send
time into the chunk. Clients (``client_workers.py``, each run in a fresh interpreter): fastmeter's load runner with
a Meter sampling at 1 kHz in the same process, on asyncio's loop and (when installed) on uvloop, and vLLM's
benchmark request function on aiohttp, run from the vLLM venv (``tests/servers/vllm_env.sh``; its rows are skipped
without it). Two modes, each closed loop at concurrency 1/16/64/256, 64 chunks per request:

- capacity: chunks back to back (the server is never the bottleneck): requests/s and main-thread CPU µs per chunk;
- fidelity: one chunk every 1 ms: client receive minus server send per chunk, p50/p99;
- schedule (fastmeter only): open-loop Poisson arrivals at 100 and 400 requests/s, 1 ms gaps, a concurrency cap no
  run reaches: how late requests went out after their scheduled time (``send_ns - scheduled_ns``, p50/p99/max).

Rounds are interleaved (every client and concurrency once per round, client order rotating); each figure is
the median over rounds with its range; the load average is read before and after. Targets: capacity >= vLLM's
client at every concurrency; fidelity p99 <= 200 µs at concurrency 64.
Run from the repository root: ``python benchmarks/bench_client.py [--rounds 3] [--json FILE] [--quick]``;
``--real-vllm`` instead compares the two clients against a real vLLM (CPU) server from the same venv.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: tests.emulators is importable from the checkout

from tests.emulators.stamp_server import StampServer, build_stamp_server  # noqa: E402

WORKER = ROOT / "benchmarks" / "client_workers.py"
VLLM_VENV = Path(os.environ.get("FASTMETER_VLLM_VENV", Path.home() / ".cache" / "fastmeter" / "vllm-venv"))
TOKENS = 64
P99_TARGET_NS = 200_000
# Open-loop rates for the schedule check (requests/s of 64 chunks, 1 ms apart), under a cap no run reaches.
SCHEDULE_RATES = (100.0, 400.0)
SCHEDULE_CAP = 1024
SCHEDULE_CLIENTS = ("fastmeter", "fastmeter-native")
REAL_CONCURRENCY, REAL_REQUESTS, REAL_TOKENS = 4, 192, 16


def run_worker(
    client: str,
    url: str,
    concurrency: int,
    n_requests: int,
    rate: float = math.inf,
    tokens: int = TOKENS,
    model: str = "m",
) -> dict[str, Any]:
    python = str(VLLM_VENV / "bin" / "python") if client == "vllm" else sys.executable
    cmd = [python, str(WORKER), client, url, str(concurrency), str(n_requests), str(tokens), "--rate", str(rate)]
    cmd += ["--model", model]
    if client == "vllm":
        cmd += ["--vllm-venv", str(VLLM_VENV)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{client} worker failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["ok"] != n_requests:
        raise RuntimeError(f"{client} at concurrency {concurrency}: only {out['ok']}/{n_requests} requests complete")
    return out


def n_requests_for(mode: str, concurrency: int, quick: bool) -> int:
    if quick:
        return max(8, 2 * concurrency)
    return max(500, 3 * concurrency) if mode == "capacity" else max(32, 4 * concurrency)


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def real_vllm(rounds: int, json_path: Path | None) -> None:
    """fastmeter's clients (asyncio, native) vs vLLM's against the real vLLM CPU server (tiny model,
    ``ignore_eos``): closed loop at concurrency 4, 192 requests of 16 tokens, as in issue 11. Output tokens/s;
    fastmeter's share of bunched responses (all chunks within 1 ms) says how the server delivered them."""
    from tests.servers.vllm_server import VllmVenv, build_model_dir, running_vllm_server

    venv = VllmVenv(VLLM_VENV)
    names = ("fastmeter", "fastmeter-native", "vllm")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model_dir(venv, Path(tmp) / "model")
        with running_vllm_server(venv, model_dir, Path(tmp) / "server.log") as srv:
            for rnd in range(rounds):
                for client in names[rnd % 3 :] + names[: rnd % 3]:  # rotate the order
                    out = run_worker(
                        client, srv.base_url, REAL_CONCURRENCY, REAL_REQUESTS, tokens=REAL_TOKENS, model=srv.model
                    )
                    runs[client].append(out)
    load_after = os.getloadavg()
    rows = []
    for client, outs in runs.items():
        tok_s = summary([o["ok"] * REAL_TOKENS / (o["wall_ns"] / 1e9) for o in outs])
        bunched = [o["bunched"] / o["ok"] for o in outs if o["bunched"] is not None]
        rows.append({"client": client, "tok_per_s": tok_s, "bunched_share": summary(bunched) if bunched else None})
        share = f", bunched {summary(bunched)['median']:.0%}" if bunched else ""
        print(
            f"real vLLM c={REAL_CONCURRENCY}: {client:<10} {tok_s['median']:.0f} tok/s "
            f"[{tok_s['min']:.0f}-{tok_s['max']:.0f}]{share}"
        )
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    if json_path:
        meta = {
            "load_before": load_before,
            "load_after": load_after,
            "concurrency": REAL_CONCURRENCY,
            "requests": REAL_REQUESTS,
            "tokens": REAL_TOKENS,
            "rounds": rounds,
        }
        json_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    ap.add_argument("--quick", action="store_true", help="one round, few requests: a smoke test, not a result")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument(
        "--extra-clients",
        nargs="*",
        default=[],
        choices=["fastmeter-native-other"],
        help="also the native transport on SCHED_OTHER (realtime=False), to show what SCHED_FIFO buys",
    )
    ap.add_argument("--modes", nargs="+", default=["capacity", "fidelity"], choices=["capacity", "fidelity"])
    ap.add_argument("--no-schedule", action="store_true", help="skip the open-loop send-lag check")
    ap.add_argument("--real-vllm", action="store_true", help="only the comparison against a real vLLM (CPU) server")
    args = ap.parse_args()
    if args.real_vllm:
        real_vllm(1 if args.quick else args.rounds, args.json)
        return
    rounds = 1 if args.quick else args.rounds
    clients = ["fastmeter", "fastmeter-native"]
    if importlib.util.find_spec("uvloop") is not None:
        clients.append("fastmeter-uvloop")
    clients += args.extra_clients
    if (VLLM_VENV / "bin" / "python").exists():
        clients.append("vllm")
    exe = build_stamp_server(Path(tempfile.gettempdir()) / f"fastmeter-bench-{os.getuid()}")
    load_before = os.getloadavg()
    raw: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    for mode, gap_s in [m for m in (("capacity", 0.0), ("fidelity", 0.001)) if m[0] in args.modes]:
        with StampServer(exe, gap_s=gap_s) as srv:
            for rnd in range(rounds):
                for c in args.concurrency:
                    order = clients[rnd % len(clients) :] + clients[: rnd % len(clients)]  # rotate the order
                    for client in order:
                        n = n_requests_for(mode, c, args.quick)
                        raw.setdefault((mode, client, c), []).append(run_worker(client, srv.url, c, n))
    with StampServer(exe, gap_s=0.001) as srv:  # open loop: is the arrival schedule kept while the client is busy?
        for rnd in range(0 if args.no_schedule else rounds):
            for rate in SCHEDULE_RATES:
                n = int(rate * (0.5 if args.quick else 2.0))
                for client in SCHEDULE_CLIENTS if rnd % 2 == 0 else SCHEDULE_CLIENTS[::-1]:
                    raw.setdefault(("schedule", client, rate), []).append(
                        run_worker(client, srv.url, SCHEDULE_CAP, n, rate=rate)
                    )
    load_after = os.getloadavg()
    rows: list[dict[str, Any]] = []
    schedule_rows: list[dict[str, Any]] = []
    for (mode, client, c), runs in sorted(raw.items()):
        if mode == "schedule":
            lags = {k: summary([r["send_lag_ns"][k] / 1e3 for r in runs]) for k in ("p50", "p99", "max")}
            schedule_rows.append(
                {"mode": mode, "client": client, "rate_per_s": c, "rounds": len(runs), "send_lag_us": lags}
            )
            continue
        row = {
            "mode": mode,
            "client": client,
            "concurrency": c,
            "rounds": len(runs),
            "req_per_s": summary([r["ok"] / (r["wall_ns"] / 1e9) for r in runs]),
            "cpu_us_per_chunk": summary([r["cpu_ns"] / r["chunks"] / 1e3 for r in runs]),
            "lat_p50_us": summary([r["lat_p50_ns"] / 1e3 for r in runs]),
            "lat_p99_us": summary([r["lat_p99_ns"] / 1e3 for r in runs]),
            # the receiving thread's mean wait for a CPU per timeslice: the machine's share of the delay
            "runq_wait_us_per_slice": summary([r["runq_wait_ns"] / max(1, r["timeslices"]) / 1e3 for r in runs]),
        }
        rows.append(row)
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; clients: {', '.join(clients)}")
    print(
        f"{'mode':<9}{'client':<17}{'conc':>5}{'req/s':>24}{'CPU us/chunk':>20}{'rx-tx p50 us':>24}"
        f"{'rx-tx p99 us':>26}{'runq wait us/slice':>22}"
    )

    def fmt(s: dict[str, float]) -> str:
        return f"{s['median']:.1f} [{s['min']:.1f}-{s['max']:.1f}]"

    for r in rows:
        print(
            f"{r['mode']:<9}{r['client']:<17}{r['concurrency']:>5}{fmt(r['req_per_s']):>24}"
            f"{fmt(r['cpu_us_per_chunk']):>20}{fmt(r['lat_p50_us']):>24}{fmt(r['lat_p99_us']):>26}"
            f"{fmt(r['runq_wait_us_per_slice']):>22}"
        )
    for r in schedule_rows:
        lag = r["send_lag_us"]
        print(
            f"schedule  {r['client']:<17}{r['rate_per_s']:g} req/s (cap {SCHEDULE_CAP}): send lag us "
            f"p50 {fmt(lag['p50'])}  p99 {fmt(lag['p99'])}  max {fmt(lag['max'])}"
        )
    by = {(r["mode"], r["client"], r["concurrency"]): r for r in rows}
    for ours_name in clients[:-1] if "vllm" in clients else []:
        for c in args.concurrency:
            if ("capacity", ours_name, c) not in by:
                continue
            ours, peer = by[("capacity", ours_name, c)], by[("capacity", "vllm", c)]
            ratio = ours["req_per_s"]["median"] / peer["req_per_s"]["median"]
            verdict = "PASS" if ratio >= 1 else "MISS"
            print(f"capacity c={c}: {ours_name}/vLLM = {ratio:.2f}x {verdict} (>= 1)")
    for name in clients[:-1] if "vllm" in clients else clients:
        fid = by.get(("fidelity", name, 64))
        if fid:
            p99 = fid["lat_p99_us"]["median"]
            verdict = "PASS" if p99 * 1e3 <= P99_TARGET_NS else "MISS"
            print(f"fidelity c=64 {name}: p99 = {p99:.0f} us {verdict} (<= 200 us)")
    if args.json:
        meta = {
            "load_before": load_before,
            "load_after": load_after,
            "cpus": os.cpu_count(),
            "tokens": TOKENS,
            "python": sys.version.split()[0],
            "quick": args.quick,
        }
        args.json.write_text(json.dumps({"meta": meta, "rows": rows + schedule_rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
