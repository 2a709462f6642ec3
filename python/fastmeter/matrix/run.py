"""Run a matrix: every cell (entry x load point x repeat) in the planned interleaved order, a launched server per
block, a bounded cool-down before each cell, one run directory per cell (DIR/<entry>/<point>/r<repeat>) and
DIR/matrix.json (rewritten after every cell, so an interrupted matrix keeps what it measured), ending with the
decision table. This module never prints: progress goes through the bench hooks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastmeter
from fastmeter.bench.point import BenchHooks, run_point
from fastmeter.bench.run_files import prepare_run_dir, write_run_json
from fastmeter.launch.session import LaunchedServer, is_launched, launched_server, mark_exit
from fastmeter.load.config import BenchConfig, config_to_dict
from fastmeter.matrix.config import MatrixConfig
from fastmeter.matrix.cooldown import GpuTelemetry, cool_down, cooldown_reasons, measure_baseline
from fastmeter.matrix.decision import best_entry, decision_table, render_decision
from fastmeter.matrix.plan import plan
from fastmeter.validity import Reason, Validity, Verdict, combine

MATRIX_FILE = "matrix.json"
MATRIX_FORMAT_VERSION = 1


def cell_path(entry: str, point: str, repeat: int) -> str:
    """A cell's run directory, relative to the matrix directory (repeats of a cell are siblings, so `compare
    DIR/<entry>/<point>` pools them)."""
    return f"{entry}/{point}/r{repeat}"


@contextlib.contextmanager
def _server(cfg: BenchConfig, log_dir: Path, hooks: BenchHooks) -> Iterator[LaunchedServer | None]:
    if not is_launched(cfg.server):
        yield None
        return
    with launched_server(cfg, log_dir, hooks.notify) as launched:
        yield launched


def run_matrix(m: MatrixConfig, out: Path, *, force: bool = False, hooks: BenchHooks = BenchHooks()) -> dict[str, Any]:
    """matrix.json's content; the CLI judges the exit status from its `points` (every cell's summary)."""
    prepare_run_dir(out, force=force)
    blocks = plan([e.name for e in m.entries], list(m.points), m.repeats, m.seed)
    entries = {e.name: e for e in m.entries}
    telemetry = GpuTelemetry(m.base.bench.gpus)
    doc: dict[str, Any] = {
        "format": "fastmeter-matrix",
        "format_version": MATRIX_FORMAT_VERSION,
        "fastmeter_version": fastmeter.__version__,
        "seed": m.seed,
        "repeats": m.repeats,
        "points": list(m.points),
        "entries": [{"name": e.name, "server": e.server, "model": e.model} for e in m.entries],
        "order": [{"entry": b.entry, "repeat": b.repeat, "points": list(b.points)} for b in blocks],
        "slo": {"slo_ttft_p99_ms": m.base.bench.slo_ttft_p99_ms, "slo_itl_p99_ms": m.base.bench.slo_itl_p99_ms},
        "cooldown": {"min_s": m.cooldown_min_s, "max_s": m.cooldown_max_s},
        "cells": [],
        "blocks": [],
        "interrupted_by_signal": None,
    }
    try:
        hooks.notify("phase", f"idle baseline of the GPUs ({m.baseline_s:g} s, no server started yet)")
        baseline = measure_baseline(telemetry, m.baseline_s)
        doc["idle_baseline"] = baseline.to_dict() if baseline else {"unavailable": telemetry.unavailable}
        for block in blocks:
            entry = entries[block.entry]
            log_dir = out / entry.name / f"server-r{block.repeat}"
            record: dict[str, Any] = {"entry": entry.name, "repeat": block.repeat}
            doc["blocks"].append(record)
            with _server(entry.points[block.points[0]], log_dir, hooks) as launched:
                record["server_dir"] = f"{entry.name}/server-r{block.repeat}" if launched else None
                for point in block.points:
                    if launched is not None and launched.exited:  # during the last cell, or the cool-down after it
                        hooks.notify("warning", f"{entry.name} r{block.repeat}: {launched.process.describe_exit()}")
                        record["server_exited"] = launched.process.exit_code
                        break
                    signum = _run_cell(
                        m, out, doc, entry.name, point, block.repeat, launched, telemetry, baseline, hooks
                    )
                    if signum is not None:
                        doc["interrupted_by_signal"] = signum
                        break
            if doc["interrupted_by_signal"] is not None:
                break
    finally:
        telemetry.close()
        _conclude(m, doc, hooks)
        write_run_json(out, doc, MATRIX_FILE)
    return {**doc, "points": [{**c, "point": c["dir"]} for c in doc["cells"]]}


def _run_cell(
    m: MatrixConfig,
    out: Path,
    doc: dict[str, Any],
    entry: str,
    point: str,
    repeat: int,
    launched: LaunchedServer | None,
    telemetry: GpuTelemetry,
    baseline: Any,
    hooks: BenchHooks,
) -> int | None:
    rel = cell_path(entry, point, repeat)
    if doc["cells"]:  # before every cell but the first: the previous cell's heat must not be this one's
        hooks.notify("phase", "cool-down")
        cooldown = cool_down(telemetry, baseline, m.cooldown_min_s, m.cooldown_max_s)
    else:
        cooldown = {"waited_s": 0.0, "reached": None if baseline is None else True, "first_cell": True}
    hooks.notify("phase", f"== cell {len(doc['cells']) + 1}: {rel}")
    cfg = next(e for e in m.entries if e.name == entry).points[point]
    run = run_point(cfg, out / rel, config_to_dict(cfg), hooks=hooks, launch=launched.identity if launched else None)
    validity = Validity.from_dict(run["validity"])
    if launched is not None:
        launched.rearm()
        if mark_exit(out / rel / "run.json", launched):
            validity = combine([validity, launched.exit_validity(tuple(run["span_ns"]))])
    e = next(x for x in doc["entries"] if x["name"] == entry)
    doc["cells"].append(
        {
            "index": len(doc["cells"]),
            "dir": rel,
            "entry": entry,
            "server": e["server"],
            "model": e["model"],
            "point": point,
            "repeat": repeat,
            "verdict": validity.verdict.value,
            "validity": validity.to_dict(),
            "cooldown": cooldown,
            **run["summary"],
        }
    )
    write_run_json(out, doc, MATRIX_FILE)
    signum = run["interrupted_by_signal"]
    return int(signum) if signum is not None else None


def _conclude(m: MatrixConfig, doc: dict[str, Any], hooks: BenchHooks) -> None:
    rows = decision_table(doc["cells"], doc["entries"], list(m.points), m.base.bench)
    doc["decision"] = rows
    doc["best"] = best_entry(rows)
    cells = [Validity.from_dict(c["validity"]) for c in doc["cells"]]
    extra = Validity(tuple(cooldown_reasons([c["cooldown"] for c in doc["cells"]])))
    missing = len(m.entries) * len(m.points) * m.repeats - len(doc["cells"])
    if missing and doc["interrupted_by_signal"] is None:
        extra = extra.with_reasons(
            [Reason("matrix_incomplete", f"{missing} cell(s) did not run (a server failed)", Verdict.INVALID)]
        )
    doc["validity"] = combine([*cells, extra]).to_dict()
    if doc["cells"]:
        hooks.notify("summary", "\n" + render_decision(rows))
    if not doc["best"] and any(v is not None for v in doc["slo"].values()):
        hooks.notify("warning", "no entry has a point that meets the SLO")
