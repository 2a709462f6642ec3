"""Client overhead per streamed chunk: CPU time the adapter + httpx + SSE parser spend on each chunk.

The fake server runs in a separate process, so the client's CPU time (``time.process_time``) is its own cost.
"paced" sends each chunk in its own read (a short server sleep between chunks, as real token gaps do); "flood"
lets chunks coalesce. Real inter-token gaps can be under 2 ms (FACTS.md), so the paced figure must stay a small
fraction of that. Run from the repository root: ``python benchmarks/bench_client.py [--chunks N] [--streams S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from fastmeter.adapters import GenRequest, OpenAIAdapter, RequestRecord, stream_request
from fastmeter.load import make_client

ROOT = Path(__file__).resolve().parents[1]

SERVER = """
import sys, time
from tests.emulators.fake_server import FakeServer, Script, Send, Sleep, sse
n, gap = int(sys.argv[1]), float(sys.argv[2])
chunk = sse({"choices": [{"index": 0, "text": " tok", "finish_reason": None}]})
steps = []
for _ in range(n):
    steps.append(Send(chunk))
    if gap:
        steps.append(Sleep(gap))
steps += [Send(sse({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": n}})), Send(sse("[DONE]"))]
with FakeServer(lambda _req: Script(steps)) as srv:
    print(srv.port, flush=True)
    sys.stdin.read()
"""


async def stream_many(url: str, streams: int) -> list[RequestRecord]:
    async with make_client(url, streams) as client:
        recs = [RequestRecord(f"b-{i}") for i in range(streams)]
        adapter = OpenAIAdapter("m")
        await asyncio.gather(*(stream_request(client, adapter, GenRequest("x", 1), r) for r in recs))
        return recs


def measure(chunks: int, streams: int, gap_s: float) -> dict[str, float]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(chunks), str(gap_s)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = f"http://127.0.0.1:{proc.stdout.readline().strip()}"
        asyncio.run(stream_many(url, 1))  # warm the import and connection paths
        cpu0, wall0 = time.process_time(), time.perf_counter()
        recs = asyncio.run(stream_many(url, streams))
        cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        proc.communicate("")
    assert all(r.ok and len(r.chunk_t_ns) == chunks for r in recs), [r.error for r in recs if not r.ok]
    total = chunks * streams
    return {
        "chunks": total,
        "streams": streams,
        "gap_ms": gap_s * 1e3,
        "client_cpu_us_per_chunk": cpu_s / total * 1e6,
        "wall_us_per_chunk": wall_s / total * 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--chunks", type=int, default=2000)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    rows = [
        measure(args.chunks, 1, 0.0005),
        measure(args.chunks, args.streams, 0.0005),
        measure(args.chunks, 1, 0.0),
        measure(args.chunks, args.streams, 0.0),
    ]
    print(f"{'mode':<7}{'streams':>8}{'chunks':>9}{'client CPU us/chunk':>22}{'wall us/chunk':>16}")
    for r in rows:
        mode = "paced" if r["gap_ms"] else "flood"
        print(
            f"{mode:<7}{r['streams']:>8}{r['chunks']:>9}{r['client_cpu_us_per_chunk']:>22.1f}"
            f"{r['wall_us_per_chunk']:>16.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
