"""Window energy error vs analytic truth: fastmeter windows (polling at 1 and 10 kHz) vs Zeus begin/end windows
vs CodeCarbon, on an emulated GPU drawing a bursty square wave (100/400 W, 170 ms period, 30% duty), once with a
continuous energy counter and once with a counter that refreshes every 100 ms (as A100/H100 report).

The peers are optional (`pip install -r benchmarks/requirements-peers.txt`); when one is missing its rows say so
and the fastmeter rows still run. CodeCarbon decides whether a machine has NVIDIA GPUs by running
`nvidia-smi`, so a stub that exits 0 goes first on its PATH.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from benchmarks.common import Emulator, Row, median, run_worker
from tests.emulators.nvml import GpuSpec, Square

WAVE = Square(100.0, 400.0, 0.17, 0.3)
# (label, counter refresh ms, instant-power refresh ms, instant-power averaging window ms). The second mode is an
# A100/H100 as FACTS.md describes it: counter and power refresh every ~100 ms, power averages the last ~25 ms.
MODES = (
    ("continuous counter", 0.0, 0.0, 0.0),
    ("counter refresh 100 ms, power 25 ms window", 100.0, 100.0, 25.0),
)
PERIODS_US = (1000, 100)  # fastmeter at 1 and 10 kHz, both on the same windows
WINDOWS = {"0.0005": 40, "0.001": 40, "0.01": 30, "0.1": 15, "1.0": 4, "10.0": 1}
CODECARBON_WINDOWS = {"0.5": 2, "1.0": 2, "10.0": 1}
QUICK_WINDOWS = {"0.0005": 10, "0.001": 10, "0.01": 10, "0.1": 4, "1.0": 1}
QUICK_CODECARBON_WINDOWS = {"1.0": 1}


def stub_nvidia_smi(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stub = directory / "nvidia-smi"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    return directory


def quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def size_label(size_s: float) -> str:
    return f"{size_s * 1e3:g} ms" if size_s < 1 else f"{size_s:g} s"


def error_row(mode: str, tool: str, size_s: float, errs: list[float], failed: int) -> Row:
    case, metric = f"{mode}, {size_label(size_s)} windows", f"{tool} |error| median"
    lost = f"; {failed} failed (sampler starved past the window's end)" if failed else ""
    if not errs:
        return Row("accuracy", case, metric, float("nan"), "%", None, f"all {failed} windows failed")
    note = f"{len(errs)} windows; p90 {quantile(errs, 0.9):.2g}%, max {max(errs):.2g}%{lost}"
    return Row("accuracy", case, metric, median(errs), "%", None, note)


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    with Emulator(gpus=1) as em:
        bin_dir = stub_nvidia_smi(Path(em.fake.work_dir) / "bin")
        for mode, refresh_ms, power_refresh_ms, power_window_ms in MODES:
            (gpu,) = em.configure([GpuSpec(waveform=WAVE, counter_refresh_ms=refresh_ms,
                                           power_refresh_ms=power_refresh_ms, power_window_ms=power_window_ms)])
            env = em.env()
            env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
            spec = {
                "periods_us": PERIODS_US,
                "windows": QUICK_WINDOWS if quick else WINDOWS,
                "codecarbon_windows": QUICK_CODECARBON_WINDOWS if quick else CODECARBON_WINDOWS,
            }
            result = run_worker(spec, env, timeout_s=600, module="benchmarks.accuracy_worker")
            errors: dict[tuple[str, float], list[float]] = defaultdict(list)
            failed: dict[tuple[str, float], int] = defaultdict(int)
            for tool, size_s, t0_ns, t1_ns, energy_j in result["windows"]:
                if energy_j is None:
                    failed[(tool, size_s)] += 1
                    continue
                truth_j = gpu.energy_j(t0_ns, t1_ns)
                errors[(tool, size_s)].append(abs(energy_j - truth_j) / truth_j * 100.0)
            for key in sorted(set(errors) | set(failed)):
                rows.append(error_row(mode, *key, errors[key], failed[key]))
            for tool, why in result["skipped"].items():
                rows.append(Row("accuracy", mode, f"{tool} skipped", float("nan"), "", None, why))
    return rows
