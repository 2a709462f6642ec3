"""Cluster measurement on Ray: CPU per second of each node's meter actor at 1 kHz, and how long a sample takes to
reach the driver, for 1, 2 and 3 local Ray nodes (`ray.cluster_utils.Cluster` on this machine).

Each node's actor runs a `Meter` on the synthetic source at 1 kHz (the sampler's cost is the same whatever it
reads; reading cost is `cpu_cost`'s subject) and the driver collects at the default cadence (a batch per node every
100 ms). Peers, measured in the same rounds: the same `Meter` in a plain Python process (what a node would pay
without Ray), and a bare Ray actor round trip (the transport's floor under the collection latency). Node counts and
the peer run interleaved, in rotated order, in each round; medians over rounds, ranges in the notes.

Standalone: `python -m benchmarks.bench_cluster [--quick]` writes results/cluster-<date>.json.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.common import ROOT, Row, median

ROUNDS = 3
NODE_COUNTS = (1, 2, 3)
PEER = """
import resource, sys, time
import fastmeter
m = fastmeter.Meter("synthetic", 1000)
with m:
    r0 = resource.getrusage(resource.RUSAGE_SELF); t0 = time.monotonic()
    time.sleep(float(sys.argv[1]))
    r1 = resource.getrusage(resource.RUSAGE_SELF); t1 = time.monotonic()
print((r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) / (t1 - t0))
"""


def _peer_cpu_per_s(seconds: float) -> float:
    out = subprocess.run([sys.executable, "-c", PEER, str(seconds)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def _ray_rtt_ms(ray, actor, n: int = 50) -> float:  # type: ignore[no-untyped-def]
    rtts = []
    for _ in range(n):
        t0 = time.monotonic_ns()
        ray.get(actor.clock_ns.remote())
        rtts.append(time.monotonic_ns() - t0)
    return float(np.median(rtts)) * 1e-6


def _one(ray, ids: list[str], n: int, seconds: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from fastmeter.cluster import ClusterMeter

    m = ClusterMeter("synthetic", 1000, nodes=ids[:n])
    with m:
        time.sleep(seconds)
        rtt_ms = _ray_rtt_ms(ray, m.links[-1].actor)
        s = m.stats()
    m.close()
    nodes, coll = s["nodes"].values(), s["collection"].values()
    return {
        "cpu_per_s": float(np.mean([x["actor_cpu_per_s"] for x in nodes])),
        "rate_hz": float(np.mean([x["rate_hz"] for x in nodes])),
        "latency_p50_ms": float(np.median([x["latency_p50_ms"] for x in coll])),
        "latency_max_ms": float(np.max([x["latency_max_ms"] for x in coll])),
        "staleness_p50_ms": float(np.median([x["staleness_p50_ms"] for x in coll])),
        "staleness_max_ms": float(np.max([x["staleness_max_ms"] for x in coll])),
        "rtt_ms": rtt_ms,
        "clock_bound_ms": float(max(x["bound_ns"] for x in s["clock"].values())) * 1e-6,
    }


def run(quick: bool) -> list[Row]:
    import ray
    from ray.cluster_utils import Cluster

    seconds = 2.0 if quick else 6.0
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(max(NODE_COUNTS) - 1):
        c.add_node(num_cpus=1)
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    head = ray.get_runtime_context().get_node_id()
    ids = [head, *sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != head)]
    results: dict[int, list[dict[str, float]]] = {n: [] for n in NODE_COUNTS}
    peer: list[float] = []
    load: list[float] = [os.getloadavg()[0]]
    try:
        for r in range(1 if quick else ROUNDS):
            cases: list[int | str] = [*NODE_COUNTS, "peer"]
            for case in cases[r % len(cases) :] + cases[: r % len(cases)]:
                if case == "peer":
                    peer.append(_peer_cpu_per_s(seconds))
                else:
                    results[int(case)].append(_one(ray, ids, int(case), seconds))
                load.append(os.getloadavg()[0])
    finally:
        ray.shutdown()
        c.shutdown()
    note_load = f"load average {min(load):.1f}-{max(load):.1f}"
    peer_ms = median(peer) * 1e3
    rows = [
        Row(
            "cluster",
            "plain Meter process (peer)",
            "CPU per second",
            peer_ms,
            "ms/s",
            note=_range(peer, 1e3, note_load),
        )
    ]
    for n in NODE_COUNTS:
        rs = results[n]
        case = f"{n} node{'s' if n > 1 else ''}"

        def col(key: str, rs: list[dict[str, float]] = rs) -> list[float]:
            return [x[key] for x in rs]

        ratio = [x["cpu_per_s"] / p for x, p in zip(rs, peer)]  # within a round
        rows += [
            Row(
                "cluster",
                case,
                "actor CPU per second",
                median(col("cpu_per_s")) * 1e3,
                "ms/s",
                note=_range(col("cpu_per_s"), 1e3, note_load),
            ),
            Row("cluster", case, "actor CPU / plain Meter process", median(ratio), "x", note=_range(ratio, 1, "")),
            Row("cluster", case, "sampler rate", median(col("rate_hz")), "Hz"),
            Row(
                "cluster",
                case,
                "collection latency p50 (newest sample)",
                median(col("latency_p50_ms")),
                "ms",
                note=_range(col("latency_p50_ms"), 1, ""),
            ),
            Row("cluster", case, "collection latency max", max(col("latency_max_ms")), "ms"),
            Row(
                "cluster",
                case,
                "staleness p50 (oldest sample of a batch)",
                median(col("staleness_p50_ms")),
                "ms",
                note=_range(col("staleness_p50_ms"), 1, ""),
            ),
            Row("cluster", case, "staleness max", max(col("staleness_max_ms")), "ms"),
            Row(
                "cluster",
                case,
                "bare Ray actor round trip p50 (peer)",
                median(col("rtt_ms")),
                "ms",
                note=_range(col("rtt_ms"), 1, ""),
            ),
            Row(
                "cluster",
                case,
                "clock offset bound (worst node)",
                median(col("clock_bound_ms")),
                "ms",
                note=_range(col("clock_bound_ms"), 1, ""),
            ),
        ]
    return rows


def _range(xs: list[float], scale: float, extra: str) -> str:
    text = f"range {min(xs) * scale:.3g}-{max(xs) * scale:.3g} over {len(xs)} rounds" if xs else "no rounds"
    return f"{text}; {extra}" if extra else text


def main() -> None:
    quick = "--quick" in sys.argv
    rows = run(quick)
    for r in rows:
        print(f"{r.case:28s} {r.metric:45s} {r.value:10.4g} {r.unit:5s} {r.note}")
    if not quick:
        out = ROOT / "benchmarks" / "results" / f"cluster-{datetime.date.today().isoformat()}.json"
        out.write_text(json.dumps({"rows": [r.to_json() for r in rows]}, indent=1) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
