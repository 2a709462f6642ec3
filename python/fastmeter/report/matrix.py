"""A matrix directory (`fastmeter bench MATRIX.toml`) as report input: each entry (server/model) becomes a sweep
of its cells (every load point and repeat, labelled entry/point/rK), its best cell the first repeat of the point
the decision table chose, and the decision table itself is shown as text."""

from __future__ import annotations

from pathlib import Path

from fastmeter.errors import FastmeterError
from fastmeter.io.rundir import read_json
from fastmeter.report.load import Sweep, load_run


def load_matrix(path: Path, label: str) -> tuple[list[Sweep], str]:
    """(one sweep per entry, the decision table as text)."""
    from fastmeter.matrix.decision import render_decision

    doc = read_json(path / "matrix.json")
    try:
        cells, entries, rows = doc["cells"], doc["entries"], doc.get("decision") or []
        slo = dict(doc.get("slo") or {})
        sweeps = []
        for e in entries:
            mine = sorted((c for c in cells if c["entry"] == e["name"]), key=lambda c: (c["point"], c["repeat"]))
            if not mine:
                continue
            row = next((r for r in rows if r["entry"] == e["name"]), {})
            best = f"{label}/{e['name']}/{row['best_point']}/r1" if row.get("best_point") else None
            points = [load_run(path / c["dir"], f"{label}/{c['dir']}") for c in mine]
            sweeps.append(Sweep(path / e["name"], f"{label}/{e['name']}", points, best, slo))
    except (KeyError, TypeError) as exc:
        raise FastmeterError(f"{path / 'matrix.json'} is corrupt ({exc}); re-run the matrix") from None
    return sweeps, render_decision(rows) if rows else "no cell of the matrix finished"
