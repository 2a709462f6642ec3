"""Memory a long trace needs at its end and when shown: finishing the file and `show`'s summary, batch by batch (what
fastmeter does) against loading the whole table (the peer: what it did before, and what pandas-style readers do).

Each measurement runs in a fresh process and reports its peak RSS above the RSS it had after its imports (and, for
`show`, after summarizing one batch, so one-time kernel and allocator set-up is not counted); the two ways alternate
over the rounds, on the same file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, Row, median

CHANNELS = 64
ROUNDS = 3

_MAKE = """
import sys, numpy as np, pyarrow as pa
from fastmeter.io.stream import TraceWriter
from fastmeter.meter import SAMPLES_SCHEMA
path, polls, channels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
names = pa.array([f"c{i}" for i in range(channels)])
w = TraceWriter(path, {"channels": [{"name": str(n)} for n in names.to_pylist()]}, force=True)
step = 4096
for start in range(0, polls, step):
    n = min(step, polls - start)
    t = np.repeat(np.arange(start, start + n, dtype=np.int64) * 1_000_000, channels)
    ch = pa.DictionaryArray.from_arrays(pa.array(np.tile(np.arange(channels, dtype=np.int32), n)), names)
    e = np.repeat(np.arange(start, start + n) * 0.1, channels)
    w.write(pa.Table.from_arrays([pa.array(t), ch, pa.array(e), pa.array(e)], schema=SAMPLES_SCHEMA))
if sys.argv[4] == "finish":
    w.close({"sampler_stats": {}})
"""

_MEASURE = """
import json, resource, sys
import pyarrow as pa, pyarrow.ipc as ipc
from fastmeter.analysis.trace_summary import summarize_batches, summarize_channels
from fastmeter.io import open_trace, read_trace
from fastmeter.io.stream import finish_stream, schema_with
def peak_kib(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path, how = sys.argv[1], sys.argv[2]
if how.startswith("show"):  # warm up on one batch: compute kernels and allocator arenas are not the trace's
    tb = open_trace(path); summarize_batches([next(tb.batches())], tb.channels)
base = peak_kib()
if how == "show-batches":
    tb = open_trace(path); summarize_batches(tb.batches(), tb.channels)
elif how == "show-whole":
    t = read_trace(path); summarize_channels(t.table, t.channels)
elif how == "finish-batches":
    from pathlib import Path
    with pa.OSFile(path) as f: schema = ipc.open_stream(f).schema
    finish_stream(Path(path), Path(path + ".final"), schema_with(schema, {"complete": True}))
elif how == "finish-whole":
    with pa.OSFile(path) as f: table = ipc.open_stream(f).read_all()
    opts = ipc.IpcWriteOptions(unify_dictionaries=True)
    with pa.OSFile(path + ".tmp", "wb") as f, ipc.new_file(f, table.schema, options=opts) as w: w.write_table(table)
print(json.dumps({"peak_mib": (peak_kib() - base) / 1024}))
"""


def _python(code: str, *args: str) -> str:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, check=False)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    return r.stdout


def _peak_mib(how: str, path: Path) -> float:
    return float(json.loads(_python(_MEASURE, str(path), how).splitlines()[-1])["peak_mib"])


def run(quick: bool) -> list[Row]:
    polls = 20_000 if quick else 150_000  # x 64 channels: 1.3M or 9.6M rows
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as d:
        stream, final = Path(d) / "s.arrow", Path(d) / "f.arrow"
        _python(_MAKE, str(final), str(polls), str(CHANNELS), "finish")
        size_mib = final.stat().st_size / 2**20
        results: dict[str, list[float]] = {}
        load = []
        for _ in range(ROUNDS):
            load.append(os.getloadavg()[0])
            for how in ("finish-batches", "finish-whole"):  # each round finishes a fresh stream
                _python(_MAKE, str(stream), str(polls), str(CHANNELS), "stream")
                results.setdefault(how, []).append(_peak_mib(how, stream))
            for how in ("show-batches", "show-whole"):
                results.setdefault(how, []).append(_peak_mib(how, final))
    note = f"{polls * CHANNELS:,} rows, {size_mib:.0f} MiB file; median of {ROUNDS} interleaved rounds"
    note += f", load avg {min(load):.1f}-{max(load):.1f}"
    for what in ("finish", "show"):
        ours, peer = results[f"{what}-batches"], results[f"{what}-whole"]
        case = f"{what} a {size_mib:.0f} MiB trace"
        rows.append(
            Row(
                "trace_memory",
                case,
                "peak RSS, batch by batch",
                median(ours),
                "MiB",
                note=f"{note}; range {min(ours):.1f}-{max(ours):.1f}",
            )
        )
        rows.append(
            Row(
                "trace_memory",
                case,
                "peak RSS, whole table (peer)",
                median(peer),
                "MiB",
                note=f"range {min(peer):.1f}-{max(peer):.1f}",
            )
        )
        ratios = [a / b for a, b in zip(ours, peer)]
        rows.append(
            Row(
                "trace_memory",
                case,
                "ratio to peer",
                median(ratios),
                "x",
                ("<=", 0.25),
                note=f"range {min(ratios):.3f}-{max(ratios):.3f}",
            )
        )
    return rows
