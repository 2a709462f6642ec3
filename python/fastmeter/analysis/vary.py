"""Which single variable two runs differ in: `compare --vary server|model|concurrency|rate`.

Every controlled difference between two runs (fingerprint, workload, and the [server] table of the config) is
sorted into a variable: [server].model is the model; [load].concurrency and [load].rate are the load; the rest of
[server] (kind, launch command, container image), the server's reported name and version and the launch spec of
the fingerprint are the server; anything else (a GPU, a driver, the workload) is a variable of its own, named by
its key. Cells of a matrix carry labels (matrix.json: each entry's `server` and `model`): a launch spec that
differs only because it loads another model (`--model DIR`) is then the model, not the server, and a served model
name that differs between two servers of one model is the server.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastmeter.env.compare import Difference, flatten

from .compare import Run, controlled_differences, normalized_config

VARIABLES = ("server", "model", "concurrency", "rate")
_SERVER_PREFIXES = ("server.", "server_launch.", "server_config.")


def variable_of(key: str) -> str:
    if key == "server_config.model":
        return "model"
    if key in ("load.concurrency", "load.rate"):
        return key.split(".", 1)[1]
    if key.startswith(_SERVER_PREFIXES):
        return "server"
    return key


def _server_table_differences(a: Run, b: Run) -> list[Difference]:
    fa = flatten({"server_config": normalized_config(a.config).get("server", {})})
    fb = flatten({"server_config": normalized_config(b.config).get("server", {})})
    return [
        Difference(k, fa.get(k, "absent"), fb.get(k, "absent"))
        for k in sorted(fa.keys() | fb.keys())
        if fa.get(k, "absent") != fb.get(k, "absent")
    ]


def matrix_labels(run: Run) -> dict[str, str] | None:
    """{"server", "model"} labels of a matrix cell (DIR/<entry>/<point>/r<k> with DIR/matrix.json), else None."""
    root = run.path.resolve().parents[2] if len(run.path.resolve().parents) > 2 else None
    if root is None or not (root / "matrix.json").is_file():
        return None
    try:
        doc = json.loads((root / "matrix.json").read_text(encoding="utf-8"))
        entry = run.path.resolve().relative_to(root).parts[0]
        return next(
            {"server": str(e["server"]), "model": str(e["model"])} for e in doc["entries"] if e["name"] == entry
        )
    except (OSError, ValueError, KeyError, TypeError, StopIteration):
        return None


def differences_by_variable(a: Run, b: Run) -> dict[str, list[Difference]]:
    """The variables in which `b` differs from `a`, each with its differences."""
    out: dict[str, list[Difference]] = {}
    for d in controlled_differences(a, b) + _server_table_differences(a, b):
        out.setdefault(variable_of(d.key), []).append(d)
    la, lb = matrix_labels(a), matrix_labels(b)
    if la is not None and lb is not None:
        moved = [d for v in ("server", "model") for d in out.pop(v, [])]
        for v in ("server", "model"):
            if la[v] != lb[v]:
                out[v] = moved or [Difference(f"matrix.{v}", la[v], lb[v])]
        if moved and la == lb:
            out["server"] = moved  # same labels, yet the launch spec or model differs: say so, never hide it
    return out


def describe(diffs: dict[str, list[Difference]]) -> str:
    return "; ".join(
        f"{v} ({', '.join(f'{d.key}: {d.a} vs {d.b}' for d in ds[:3])}{', ...' if len(ds) > 3 else ''})"
        for v, ds in diffs.items()
    )


def matrix_comparisons(matrix_dir: Path, vary: str) -> list[tuple[str, list[Path], list[Path]]]:
    """(title, baseline run dirs, candidate run dirs) per comparison the matrix holds for `vary`: across entries at
    each load point (server, model), or across load points for each entry (concurrency, rate)."""
    doc: dict[str, Any] = json.loads((matrix_dir / "matrix.json").read_text(encoding="utf-8"))
    entries = [e["name"] for e in doc["entries"]]
    points = list(doc["points"])
    cells = {(c["entry"], c["point"]): [] for c in doc["cells"]}
    for c in doc["cells"]:
        cells[(c["entry"], c["point"])].append(matrix_dir / c["dir"])
    out = []
    if vary in ("server", "model"):
        for p in points:
            runs = [cells.get((e, p), []) for e in entries]
            if runs[0] and any(runs[1:]):
                out.append((f"at {p}", runs[0], [r for rs in runs[1:] for r in rs]))
    else:
        for e in entries:
            runs = [cells.get((e, p), []) for p in points]
            if runs[0] and any(runs[1:]):
                out.append((f"{e}", runs[0], [r for rs in runs[1:] for r in rs]))
    return out


def check_vary(
    baseline: Run, candidates: Sequence[tuple[str, Run]], vary: str | None
) -> tuple[dict[str, str], dict[str, dict[str, list[Difference]]]]:
    """(label -> what varies, label -> variables that differ beyond `vary`) for each candidate (label, first run)."""
    varies, beyond = {}, {}
    for label, run in candidates:
        diffs = differences_by_variable(baseline, run)
        varies[label] = ", ".join(diffs) or "nothing"
        extra = {v: d for v, d in diffs.items() if v != vary}
        if extra:
            beyond[label] = extra
    return varies, beyond
