"""Read run directories and sweep directories (as `fastmeter bench` writes them) into one structure.

Every problem with the input (a path that is not a run directory, a missing or corrupt file) becomes one
FastmeterError naming the path and what to pass instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastmeter.errors import FastmeterError
from fastmeter.io import Trace
from fastmeter.io.rundir import WHAT_TO_PASS, read_json, read_run_dir
from fastmeter.io.schema import SUFFIXES
from fastmeter.io.shape import NUMBER_MAP, TEXT, check_object


@dataclass
class Run:
    """One run directory: run.json, the power trace and the per-request table."""

    path: Path
    label: str
    meta: dict[str, Any]  # run.json
    trace: Trace  # samples.arrow
    requests: pa.Table  # requests.arrow

    @property
    def summary(self) -> dict[str, Any]:
        return self.meta.get("summary") or {}

    def measured_requests(self) -> pa.Table:
        """Requests outside warm-up (the ones the summary and per-request energy cover)."""
        return self.requests.filter(pc.invert(pc.fill_null(self.requests.column("warmup"), False)))


@dataclass
class Sweep:
    """A sweep directory: its points in sweep.json's order, the best point's label and the SLOs."""

    path: Path
    label: str
    points: list[Run]
    best: str | None  # label of the best point, as a run label
    slo: dict[str, float | None] = field(default_factory=dict)


@dataclass
class Report:
    runs: list[Run]  # every run, sweep points included, in the order given
    sweeps: list[Sweep]  # sweep directories; loose runs (two or more) are compared as one unnamed group
    loose: list[Run]  # runs given directly, not as part of a sweep directory
    notes: list[str] = field(default_factory=list)  # text shown after the runs (a matrix's decision table)


def load_run(path: Path, label: str) -> Run:
    files = read_run_dir(path)
    return Run(path, label, files.meta, files.trace, files.requests)


def load_sweep(path: Path, label: str) -> Sweep:
    sweep = check_object(read_json(path / "sweep.json"), {"best": TEXT, "slo": NUMBER_MAP}, str(path / "sweep.json"))
    points_meta = sweep.get("points")
    if not isinstance(points_meta, list) or not all(isinstance(p, dict) and isinstance(p.get("point"), str)
                                                    for p in points_meta):
        raise FastmeterError(f"{path / 'sweep.json'} is corrupt (no list of points); re-run the sweep")
    points = [load_run(path / str(p["point"]), f"{label}/{p['point']}") for p in points_meta]
    best = f"{label}/{sweep['best']}" if sweep.get("best") else None
    return Sweep(path, label, points, best, dict(sweep.get("slo") or {}))


def _labels(paths: list[Path]) -> list[str]:
    """Directory names, or longer path tails where names repeat, so every label is unique."""
    for depth in range(1, 64):
        labels = ["/".join(p.resolve().parts[-depth:]) for p in paths]
        if len(set(labels)) == len(labels):
            return labels
    return [str(p) for p in paths]


def load_report(paths: list[str | Path]) -> Report:
    """Runs and sweeps from the given directories, in order."""
    if not paths:
        raise FastmeterError(f"no run directories given; {WHAT_TO_PASS}")
    dirs = [Path(p) for p in paths]
    runs: list[Run] = []
    sweeps: list[Sweep] = []
    loose: list[Run] = []
    notes: list[str] = []
    for path, label in zip(dirs, _labels(dirs)):
        if path.is_file() and path.suffix in SUFFIXES:
            raise FastmeterError(f"{path} is a trace file: use `fastmeter show {path}` (report reads run "
                                 "directories of `fastmeter bench`)")
        if not path.is_dir():
            raise FastmeterError(f"{path} is not a directory; {WHAT_TO_PASS}")
        if (path / "matrix.json").is_file():
            from fastmeter.report.matrix import load_matrix

            entries, decision = load_matrix(path, label)
            sweeps.extend(entries)
            runs.extend(r for s in entries for r in s.points)
            notes.append(decision)
        elif (path / "sweep.json").is_file():
            sweep = load_sweep(path, label)
            sweeps.append(sweep)
            runs.extend(sweep.points)
        elif (path / "run.json").is_file():
            run = load_run(path, label)
            loose.append(run)
            runs.append(run)
        else:
            raise FastmeterError(f"{path} is not a run directory (no run.json or sweep.json in it); {WHAT_TO_PASS}")
    return Report(runs, sweeps, loose, notes)


def in_flight(requests: pa.Table, end_default_ns: int) -> tuple[np.ndarray, np.ndarray]:
    """(t_ns, number of requests in flight from that instant on), a step function from send_ns/end_ns; a request
    with no end (cancelled by an interrupt) counts as in flight until `end_default_ns`."""
    sent = requests.filter(pc.is_valid(requests.column("send_ns")))
    send = sent.column("send_ns").to_numpy()
    end = pc.fill_null(sent.column("end_ns"), end_default_ns).to_numpy()  # ints stay exact: no float round trip
    t = np.concatenate([send, end]).astype(np.int64)
    step = np.concatenate([np.ones(len(send), np.int64), -np.ones(len(end), np.int64)])
    order = np.lexsort((step, t))  # at equal instants apply ends first: a request never overlaps its successor
    t, count = t[order], np.cumsum(step[order])
    keep = np.append(t[1:] != t[:-1], True)  # one value per instant: the count after all its events
    return t[keep], count[keep]
