"""Attribution streamed from disk in bounded memory (issue 12): 1M requests over 100M samples.

Files are generated first, outside the measured part: a one-channel trace (`fastmeter trace`'s format, a sample
every 1 ms: 100M samples are ~28 hours) and a run directory's requests.arrow + chunks.arrow (`bench`'s format, in
order of send, ~10 requests/s of 0.2-6 s with a one-token chunk every ~0.5 s). Each measurement then runs in a
fresh process and reports its peak RSS above its RSS after imports and a small warm-up attribution:

- stream: `StreamedAttribution(trace_curve(...), run_request_batches(...))` written by `write_attribution`, at
  each size (RSS against size: flat when memory is bounded by the batch);
- memory (the peer): the whole channel and request tables loaded, `attribute()` in memory, results written with
  one table write, at the smallest size (the one it can hold here).

Rounds interleave the sizes and the peer; medians, with ranges and the load average in the notes.

    python -m benchmarks.bench_attribution_stream                       (1M requests, 100M samples + 2 smaller)
    python -m benchmarks.bench_attribution_stream --scale 0.01 --rounds 1   (a smoke run)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
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

FULL_SAMPLES = 100_000_000
FULL_REQUESTS = 1_000_000
SIZES = (0.1, 0.3, 1.0)  # fractions of the full size, streamed; the peer runs at the first
PERIOD_NS = 1_000_000
UPDATE_PERIOD_S = 0.1

_MAKE = """
import sys, numpy as np, pyarrow as pa
from pathlib import Path
from fastmeter.io.stream import TraceWriter
from fastmeter.meter import SAMPLES_SCHEMA
from fastmeter.bench.tables import CHUNKS_SCHEMA, REQUESTS_SCHEMA
d, samples, requests, period_ns = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(1)
names = pa.array(["gpu0"])
w = TraceWriter(d / "trace.arrow", {"channels": [{"name": "gpu0"}]}, force=True)
e0, step = 0.0, 1 << 16  # record batches of a trace flush's order of size
for lo in range(0, samples, step):
    n = min(step, samples - lo)
    t = (np.arange(lo, lo + n, dtype=np.int64) + 1) * period_ns
    p = np.repeat(rng.uniform(100, 400, n // 1000 + 1), 1000)[:n]  # a new power level every second
    e = e0 + np.cumsum(p * period_ns * 1e-9)
    e0 = float(e[-1])
    ch = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), names)
    w.write(pa.Table.from_arrays([pa.array(t), ch, pa.array(e), pa.array(p)], schema=SAMPLES_SCHEMA))
w.close({"sampler_stats": {}})
span_ns = samples * period_ns
send = np.sort(rng.integers(0, span_ns - 6 * 10**9, requests))
end = send + rng.integers(2 * 10**8, 6 * 10**9, requests)
n_chunks = np.maximum(1, (end - send) // 500_000_000).astype(np.int64)
rw = pa.ipc.new_file(str(d / "requests.arrow"), REQUESTS_SCHEMA)
cw = pa.ipc.new_file(str(d / "chunks.arrow"), CHUNKS_SCHEMA)
for lo in range(0, requests, 65536):
    s, e, k = send[lo:lo + 65536], end[lo:lo + 65536], n_chunks[lo:lo + 65536]
    n = len(s)
    owner = np.repeat(np.arange(n), k)
    frac = (np.arange(len(owner)) - np.repeat(np.cumsum(k) - k, k) + 1) / np.repeat(k, k)
    ct = s[owner] + ((e - s)[owner] * frac).astype(np.int64)
    ids = pa.array([f"r{lo + i}" for i in range(n)])
    cols = {f.name: pa.nulls(n, f.type) for f in REQUESTS_SCHEMA}
    cols.update(request_id=ids, warmup=pa.array(np.zeros(n, bool)), status=pa.array(["ok"] * n),
                send_ns=pa.array(s), first_token_ns=pa.array(ct[np.cumsum(k) - k]), end_ns=pa.array(e),
                n_chunks=pa.array(k.astype(np.int32)))
    rw.write_batch(pa.record_batch([cols[f.name] for f in REQUESTS_SCHEMA], schema=REQUESTS_SCHEMA))
    cw.write_batch(pa.record_batch([ids.take(pa.array(owner)), pa.array(ct), pa.array(np.ones(len(ct), np.int32))],
                                   schema=CHUNKS_SCHEMA))
rw.close(); cw.close()
print(int(n_chunks.sum()))
"""

_MEASURE = """
import json, math, resource, sys, time
import numpy as np
from pathlib import Path
from fastmeter.attribution import attribute
from fastmeter.attribution_stream import StreamedAttribution
from fastmeter.io.attribution_files import RowNumbers, run_request_batches, trace_curve, write_attribution
d, how, method, period_s, warm = Path(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]), Path(sys.argv[5])
def rss(): return int(open("/proc/self/statm").read().split()[1]) * 4096
def run(d):
  if how == "stream":
      rows = RowNumbers()
      s = StreamedAttribution(trace_curve(d / "trace.arrow"), run_request_batches(d, row_numbers=rows), method=method,
                              update_period_s=period_s)
      sums = []
      def counted(batches):
          for b in batches:
              sums.append(math.fsum(b.energy_j))
              yield b
      n = write_attribution(counted(s), d / "attribution.arrow", rows)
      total, idle, requests_j = s.totals.total_j, s.totals.idle_j, math.fsum(sums)
      points = s.totals.curve_points
  else:
      import pyarrow as pa
      from fastmeter.bench.tables import read_arrow, write_arrow
      from fastmeter.io import open_trace
      batches = list(open_trace(d / "trace.arrow").batches())
      t = np.concatenate([b.column("t_ns").to_numpy() for b in batches])
      e = np.concatenate([b.column("energy_j").to_numpy() for b in batches])
      del batches
      req, ch = read_arrow(d / "requests.arrow"), read_arrow(d / "chunks.arrow")
      off = np.concatenate([[0], np.cumsum(req.column("n_chunks").to_numpy())])
      a = attribute(t, e, req.column("send_ns").to_numpy(), req.column("end_ns").to_numpy(),
                    req.column("first_token_ns"), chunk_offsets=off, chunk_t_ns=ch.column("t_ns").to_numpy(),
                    chunk_tokens=ch.column("tokens").to_numpy(), method=method, update_period_s=period_s)
      write_arrow(a.to_arrow(), d / "attribution-memory.arrow")
      n, total, idle, points, requests_j = len(a.energy_j), a.total_j, a.idle_j, len(t), math.fsum(a.energy_j)
  return n, total, idle, points, requests_j
# warm-up on a tiny run of the same files: libraries (pyarrow's IPC and compute), kernels and allocator arenas are
# not the data's
run(warm)
base = rss()
t0 = time.perf_counter()
n, total, idle, points, requests_j = run(d)
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"wall_s": wall, "peak_above_base_mb": (peak - base) / 2**20, "base_mb": base / 2**20,
                  "requests": n, "samples": points, "total_j": total, "idle_j": idle, "requests_j": requests_j}))
"""


def _python(code: str, *args: str) -> str:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, check=False)
    if r.returncode:
        raise RuntimeError(r.stderr[-3000:])
    return r.stdout


def measure(scale: float, rounds: int, method: str, directory: Path, progress=None) -> dict:
    warm = directory / "warm-up"
    warm.mkdir()
    _python(_MAKE, str(warm), "20000", "200", str(PERIOD_NS))
    sizes = {}
    for f in SIZES:
        d = directory / f"size-{f:g}"
        d.mkdir()
        t0 = time.perf_counter()
        chunks = int(
            _python(
                _MAKE, str(d), str(int(FULL_SAMPLES * scale * f)), str(int(FULL_REQUESTS * scale * f)), str(PERIOD_NS)
            ).split()[-1]
        )
        disk = sum(p.stat().st_size for p in d.iterdir())
        sizes[f] = {"dir": d, "chunks": chunks, "disk_bytes": disk, "make_s": time.perf_counter() - t0}
        if progress:
            progress({"generated": f, "disk_bytes": disk, "chunks": chunks})
    runs: list[dict] = []
    for r in range(rounds):
        plan = [("stream", f) for f in SIZES] + [("memory", SIZES[0])]
        for how, f in plan if r % 2 == 0 else plan[::-1]:
            load = os.getloadavg()[0]
            args = (str(sizes[f]["dir"]), how, method, str(UPDATE_PERIOD_S), str(warm))
            out = json.loads(_python(_MEASURE, *args).splitlines()[-1])
            runs.append({"round": r, "how": how, "size": f, "load_avg_1m": load, **out})
            if progress:
                progress(runs[-1])
    return {
        "method": method,
        "scale": scale,
        "sizes": {str(f): {k: v for k, v in s.items() if k != "dir"} for f, s in sizes.items()},
        "runs": runs,
    }


def rows(result: dict) -> list[Row]:
    out = []
    runs = result["runs"]
    loads = [r["load_avg_1m"] for r in runs]
    load_note = f"load avg 1m {min(loads):.1f}-{max(loads):.1f}"

    def pick(how: str, size: float) -> list[dict]:
        return [r for r in runs if r["how"] == how and r["size"] == size]

    def med(rs: list[dict], key: str) -> tuple[float, str]:
        v = [r[key] for r in rs]
        return statistics.median(v), f"range {min(v):.3g}-{max(v):.3g}"

    for how, sizes in (("stream", SIZES), ("memory", SIZES[:1])):
        for f in sizes:
            rs = pick(how, f)
            case = f"{how}, {rs[0]['requests']:,} requests over {rs[0]['samples']:,} samples ({result['method']})"
            rss, rss_note = med(rs, "peak_above_base_mb")
            out.append(
                Row(
                    "attribution_stream",
                    case,
                    "peak RSS above baseline",
                    rss,
                    "MB",
                    note=f"{len(rs)} rounds, {rss_note}; {load_note}",
                )
            )
            for unit, key in (("requests/s", "requests"), ("samples/s", "samples")):
                v = [r[key] / r["wall_s"] for r in rs]
                out.append(
                    Row(
                        "attribution_stream",
                        case,
                        f"throughput ({unit})",
                        statistics.median(v),
                        unit,
                        note=f"range {min(v):.3g}-{max(v):.3g}",
                    )
                )
            worst = max(abs(r["requests_j"] + r["idle_j"] - r["total_j"]) / r["total_j"] for r in rs)
            out.append(
                Row(
                    "attribution_stream",
                    case,
                    "conservation |requests + idle - total| / total (worst)",
                    worst,
                    "",
                    ("<=", 1e-9),
                )
            )
    small = SIZES[0]
    ratio_rss = [
        s["peak_above_base_mb"] / m["peak_above_base_mb"] for s, m in zip(pick("stream", small), pick("memory", small))
    ]
    ratio_speed = [m["wall_s"] / s["wall_s"] for s, m in zip(pick("stream", small), pick("memory", small))]
    case = f"stream vs memory, {pick('memory', small)[0]['requests']:,} requests"
    out.append(
        Row(
            "attribution_stream",
            case,
            "peak RSS, stream / memory",
            statistics.median(ratio_rss),
            "x",
            note=f"range {min(ratio_rss):.3g}-{max(ratio_rss):.3g} (same round)",
        )
    )
    out.append(
        Row(
            "attribution_stream",
            case,
            "throughput, stream / memory",
            statistics.median(ratio_speed),
            "x",
            note=f"range {min(ratio_speed):.3g}-{max(ratio_speed):.3g} (same round)",
        )
    )
    big, rs_small = pick("stream", SIZES[-1]), pick("stream", small)
    growth = statistics.median([r["peak_above_base_mb"] for r in big]) / statistics.median(
        [r["peak_above_base_mb"] for r in rs_small]
    )
    out.append(
        Row(
            "attribution_stream",
            f"stream, size x{SIZES[-1] / small:g}",
            "peak RSS, largest / smallest size",
            growth,
            "x",
            ("<=", 1.5),
            note="flat when memory is bounded by the batch, not the run",
        )
    )
    return out


def run(quick: bool) -> list[Row]:
    """For benchmarks/run.py: the full size and 3 rounds, or 1% of it once with --quick (a smoke test)."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("FASTMETER_BENCH_TMP")) as d:
        return rows(measure(0.01 if quick else 1.0, 1 if quick else 3, "time-share", Path(d)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of 1M requests / 100M samples (default 1)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--method", default="time-share", choices=("time-share", "token-weighted"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="directory for the JSON")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("FASTMETER_BENCH_TMP")) as d:
        result = measure(
            args.scale,
            args.rounds,
            args.method,
            Path(d),
            progress=lambda p: print(json.dumps(p), file=sys.stderr, flush=True),
        )
    result["load_avg_end"] = os.getloadavg()
    result["code"] = code_version()
    result["rows"] = [r.to_json() for r in rows(result)]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"attribution-stream-{datetime.date.today().isoformat()}-{args.method}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    for r in result["rows"]:
        print(
            f"{r['case']} | {r['metric']}: {r['value']:.4g} {r['unit']} {r['target'] or ''} {r['verdict']}  {r['note']}"
        )


if __name__ == "__main__":
    main()
