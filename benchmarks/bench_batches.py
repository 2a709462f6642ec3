"""Per-batch energy as the task runner and training loops record it: fastmeter's `BatchRecorder` against Zeus
windows on the very same batches (benchmarks/batches_worker.py), on one emulated GPU under a bursty square load
(100/400 W, 170 ms, 30% duty) whose energy counter is continuous or refreshes every 100 ms (A100/H100-like).

Per round and case: the median |error| of each tool's per-batch energy against the emulator's exact integral over
that tool's own window, the share of batches whose truth lies inside fastmeter's bound, and each tool's time per
batch inside its own calls. Cases run in fresh interpreters, interleaved, ROUNDS rounds; medians over rounds, ranges
and the load average in the notes. Zeus is optional (benchmarks/requirements-peers.txt): without it this benchmark
is skipped.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from benchmarks.common import Emulator, Row, median, run_worker
from tests.emulators.nvml import GpuSpec, Square

ROUNDS = 3
WAVE = (100.0, 400.0, 0.17, 0.3)
CASES = {"continuous counter": 0.0, "100 ms counter": 100.0}


def run(quick: bool) -> list[Row]:
    if importlib.util.find_spec("zeus") is None:
        return [
            Row("batches", "-", "skipped: Zeus is not installed (benchmarks/requirements-peers.txt)", float("nan"), "")
        ]
    batches, work_ms = (30, 20.0) if quick else (100, 20.0)
    err: dict[tuple[str, str], list[float]] = {}
    inside: dict[str, list[float]] = {}
    cost: dict[tuple[str, str], list[float]] = {}
    load = [os.getloadavg()[0]]
    with Emulator(gpus=1) as em:
        for _ in range(ROUNDS):
            for case, refresh_ms in CASES.items():
                (spec,) = em.configure([GpuSpec(waveform=Square(*WAVE), counter_refresh_ms=refresh_ms)])
                r = run_worker({"batches": batches, "work_ms": work_ms}, em.env(), module="benchmarks.batches_worker")
                fm = np.array([[spec.energy_j(t0, t1), e, b] for t0, t1, e, b in r["fastmeter"]])
                zs = np.array([[spec.energy_j(t0, t1), e] for t0, t1, e in r["zeus"]])
                err.setdefault((case, "fastmeter"), []).append(float(np.median(abs(fm[:, 1] / fm[:, 0] - 1))) * 100)
                err.setdefault((case, "zeus"), []).append(float(np.median(abs(zs[:, 1] / zs[:, 0] - 1))) * 100)
                inside.setdefault(case, []).append(float(np.mean(abs(fm[:, 1] - fm[:, 0]) <= fm[:, 2])) * 100)
                cost.setdefault((case, "fastmeter"), []).append(float(np.median(r["fastmeter_call_ns"])) / 1e3)
                cost.setdefault((case, "fastmeter query"), []).append(r["table_ns"] / len(r["fastmeter"]) / 1e3)
                cost.setdefault((case, "zeus"), []).append(float(np.median(r["zeus_call_ns"])) / 1e3)
                load.append(os.getloadavg()[0])
            for tool in ("fastmeter", "zeus", "nothing"):  # each alone in its process: its cost inside the loop
                spec = {"batches": batches, "work_ms": work_ms, "alone": tool}
                r = run_worker(spec, em.env(), module="benchmarks.batches_worker")
                cost.setdefault(("alone", tool), []).append(float(np.median(r["call_ns"])) / 1e3)
    note = (
        f"{ROUNDS} interleaved rounds of {batches} busy batches of {work_ms:g} ms, median over rounds; load "
        f"average {min(load):.1f}-{max(load):.1f}"
    )
    rows = []
    for case in CASES:
        for tool in ("fastmeter", "zeus"):
            e = err[(case, tool)]
            rows.append(
                Row(
                    "batches",
                    case,
                    f"{tool} per-batch energy error (median)",
                    median(e),
                    "%",
                    None,
                    f"range {min(e):.3g}-{max(e):.3g}; {note}",
                )
            )
        for tool, what in (
            ("fastmeter", "fastmeter time per batch inside the loop (enter + exit)"),
            ("zeus", "zeus time per batch inside the loop (begin + end window)"),
            ("fastmeter query", "fastmeter query time per batch after the run (table())"),
        ):
            c = cost[(case, tool)]
            rows.append(Row("batches", case, what, median(c), "us", None, f"range {min(c):.3g}-{max(c):.3g}"))
        rows.append(
            Row(
                "batches",
                case,
                "fastmeter batches with the truth inside the bound",
                min(inside[case]),
                "%",
                (">=", 100.0),
                "worst round",
            )
        )
        ratios = [z / max(f, 1e-9) for z, f in zip(err[(case, "zeus")], err[(case, "fastmeter")])]
        rows.append(
            Row(
                "batches",
                case,
                "zeus / fastmeter per-batch error",
                median(ratios),
                "x",
                None,
                f"per-round ratio, range {min(ratios):.3g}-{max(ratios):.3g}",
            )
        )
        ratios = [z / max(f, 1e-9) for z, f in zip(cost[(case, "zeus")], cost[(case, "fastmeter")])]
        rows.append(
            Row(
                "batches",
                case,
                "zeus / fastmeter time inside the loop",
                median(ratios),
                "x",
                None,
                f"per-round ratio, range {min(ratios):.3g}-{max(ratios):.3g}",
            )
        )
    for tool in ("fastmeter", "zeus", "nothing"):
        c = cost[("alone", tool)]
        rows.append(
            Row(
                "batches",
                "100 ms counter, each tool alone",
                f"{tool} time per batch inside the loop",
                median(c),
                "us",
                None,
                f"range {min(c):.3g}-{max(c):.3g}; {note}",
            )
        )
    ratios = [z / max(f, 1e-9) for z, f in zip(cost[("alone", "zeus")], cost[("alone", "fastmeter")])]
    rows.append(
        Row(
            "batches",
            "100 ms counter, each tool alone",
            "zeus / fastmeter time inside the loop",
            median(ratios),
            "x",
            None,
            f"per-round ratio, range {min(ratios):.3g}-{max(ratios):.3g}",
        )
    )
    return rows
