"""SPSC ring transfer rate: benchmarks/cpp/bench_ring.cpp, compiled here with g++ against csrc/."""

from __future__ import annotations

import json
import shutil
import subprocess

from benchmarks.common import ROOT, Row, median

SOURCE = ROOT / "benchmarks" / "cpp" / "bench_ring.cpp"
BINARY = ROOT / "build" / "bench" / "bench_ring"
REPEATS = 3


def build() -> None:
    compiler = shutil.which("g++")
    if compiler is None:
        raise RuntimeError("g++ not found; install a C++17 compiler to run the ring benchmark")
    headers = [ROOT / "csrc" / "fastmeter" / n for n in ("ring.h", "sample.h")]
    if BINARY.exists() and all(BINARY.stat().st_mtime > p.stat().st_mtime for p in (SOURCE, *headers)):
        return
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        compiler,
        "-std=c++17",
        "-O2",
        "-pthread",
        "-I",
        str(ROOT / "csrc"),
        str(SOURCE),
        "-o",
        str(BINARY),
    ]
    subprocess.run(cmd, check=True)


def run(quick: bool) -> list[Row]:
    build()
    items = 2_000_000 if quick else 20_000_000
    runs = [
        json.loads(subprocess.run([str(BINARY), str(items)], check=True, capture_output=True, text=True).stdout)
        for _ in range(REPEATS)
    ]
    if not all(r["checksum_ok"] for r in runs):
        raise RuntimeError("ring benchmark: consumer checksum differs from producer's")
    pinned = "pinned to CPUs 0/1" if all(r["pinned"] for r in runs) else "not pinned"
    note = f"32-byte Sample, capacity 65536, bulk pop 4096; best of {REPEATS} x {items:,} items, {pinned}"
    return [
        Row(
            "ring",
            "producer -> consumer",
            "transfer rate",
            max(r["items_per_ms"] for r in runs),
            "items/ms",
            None,
            note,
        ),
        Row(
            "ring",
            "producer -> consumer",
            "transfer rate (median)",
            median([r["items_per_ms"] for r in runs]),
            "items/ms",
        ),
    ]
