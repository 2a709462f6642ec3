"""Benchmarks that other parts of the project keep as standalone scripts in benchmarks/: run.py runs them as
subprocesses with the arguments below and keeps their printed tables (each script also writes its own JSON)."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.common import ROOT

# name -> (script, arguments for a full run, arguments for --quick)
SCRIPTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "client": ("bench_client.py", (), ("--quick", "--concurrency", "1", "16")),
    "attribution": (
        "bench_attribution.py",
        (),
        ("--requests", "10000", "--samples", "100000", "--repeat", "1"),
    ),
}


def run_script(name: str, quick: bool, timeout_s: float = 1800) -> str:
    """The script's standard output; raises when it is absent or fails."""
    script, full, short = SCRIPTS[name]
    path = ROOT / "benchmarks" / script
    if not path.exists():
        raise FileNotFoundError(f"benchmarks/{script} is not in this checkout")
    proc = subprocess.run(
        [sys.executable, str(path), *(short if quick else full)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmarks/{script} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc.stdout.strip()
