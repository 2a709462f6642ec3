"""Write a Comparison as an aligned text table, a Markdown table, JSON or CSV.

All four carry the same facts: per group of repeated runs the mean (with its 95% interval when there are >= 2
runs) of each metric, and per candidate the change of the gated metric against the baseline, the test used,
its interval and the verdict."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from typing import Any

from fastmeter.env.compare import flatten
from fastmeter.validity import combine

from .compare import METRICS, Comparison, Group, Metric, Verdict, describe_test, normalized_config

FORMATS = ("table", "markdown", "json", "csv")


def _present_metrics(c: Comparison) -> list[Metric]:
    return [m for m in METRICS.values() if any(g.values(m) for g in c.groups)]


def _config_differences(groups: list[Group]) -> list[str]:
    """Per group, the config values ("load.concurrency=4") that are not the same in every group."""
    flat = [flatten(normalized_config(g.runs[0].config)) for g in groups]
    keys = sorted({k for f in flat for k in f if len({json.dumps(x.get(k), default=str) for x in flat}) > 1})
    return [" ".join(f"{k}={f.get(k, '-')}" for k in keys) or "-" for f in flat]


def _cell(g: Group, m: Metric) -> str:
    e = g.estimate(m)
    if e.n == 0:
        return "-"
    if e.n == 1:
        return format(e.mean, m.fmt)
    return f"{format(e.mean, m.fmt)} ± {format(e.half_width, '.2g')}"


def _pct(x: float) -> str:
    return f"{x:+.1f}%" if math.isfinite(x) else "-"


def _change_ci_pct(v: Verdict, c: Comparison) -> tuple[float, float]:
    base = abs(math.fsum(c.baseline.values(v.metric)) / len(c.baseline.values(v.metric)))
    if v.test.test == "none" or not base:
        return math.nan, math.nan
    return 100.0 * v.test.ci_low / base, 100.0 * v.test.ci_high / base


def _validity_cell(g: Group) -> str:
    """The group's worst verdict; "unrecorded" when a run predates validity."""
    if any(r.validity is None for r in g.runs):
        return "unrecorded"
    return combine([r.validity for r in g.runs if r.validity is not None]).verdict.value


def side_by_side(c: Comparison) -> list[list[str]]:
    """Rows of the side-by-side table: a header, then identity rows, then one row per recorded metric."""
    groups = c.groups
    rows = [["metric", *(f"{g.label} ({g.role})" for g in groups)],
            ["model", *(g.runs[0].model for g in groups)],
            ["server", *(g.runs[0].server for g in groups)],
            ["runs", *(str(len(g.runs)) for g in groups)],
            ["validity", *(_validity_cell(g) for g in groups)]]
    differences = _config_differences(groups)
    if any(d != "-" for d in differences):
        rows.append(["config", *differences])
    rows += [[m.label, *(_cell(g, m) for g in groups)] for m in _present_metrics(c)]
    return rows


def verdict_rows(c: Comparison) -> list[list[str]]:
    rows = [["candidate", "change", "95% interval", "test", "verdict"]]
    for v in c.verdicts:
        lo, hi = _change_ci_pct(v, c)
        interval = f"{_pct(lo)} .. {_pct(hi)}" if math.isfinite(lo) else "-"
        rows.append([v.candidate.label, _pct(v.change_pct), interval, describe_test(v.test), v.status])
    return rows


def _heading(c: Comparison) -> str:
    m = c.metric
    direction = "lower is better" if m.lower_is_better else "higher is better"
    gate = f"; regression threshold {c.max_regression_pct:g}%" if c.max_regression_pct is not None else ""
    return f"{m.label} ({m.name}, {direction}) against {c.baseline.label}{gate}"


NOTE = ("± is the 95% confidence interval of the mean (Student's t) over repeated runs. A regression needs a "
        "change worse than the threshold and, where a noise estimate exists, a 95% interval of the difference "
        "that excludes zero (Welch's t-test when both sides have >= 2 runs).")


def _aligned(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


_MD_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", "`": "\\`", "[": "\\[",
                              "]": "\\]", "\\": "\\\\", "\n": " ", "\r": " "})


def md_text(text: str) -> str:
    """`text` (a model name, a config value, a run label) as literal Markdown: no HTML, no table break, no
    code span or link, whatever it holds; Markdown renderers pass raw HTML through, so `<script>` must not."""
    return text.translate(_MD_ESCAPES)


def _markdown(rows: list[list[str]]) -> str:
    def line(r: list[str]) -> str:
        return "| " + " | ".join(md_text(cell) for cell in r) + " |"
    return "\n".join([line(rows[0]), "|" + "---|" * len(rows[0]), *(line(r) for r in rows[1:])])


def render_table(c: Comparison) -> str:
    return "\n\n".join([_aligned(side_by_side(c)), _heading(c), _aligned(verdict_rows(c)), NOTE]) + "\n"


def render_markdown(c: Comparison) -> str:
    return "\n\n".join([_markdown(side_by_side(c)), f"**{md_text(_heading(c))}**", _markdown(verdict_rows(c)),
                        f"_{NOTE}_"]) + "\n"


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _group_json(g: Group) -> dict[str, Any]:
    metrics = {}
    for m in METRICS.values():
        e = g.estimate(m)
        if e.n:
            metrics[m.name] = {"n": e.n, "mean": e.mean, "sd": _num(e.sd), "ci95_low": _num(e.ci_low),
                               "ci95_high": _num(e.ci_high), "values": g.values(m)}
    return {"label": g.label, "role": g.role, "runs": [str(r.path) for r in g.runs], "model": g.runs[0].model,
            "server": g.runs[0].server, "metrics": metrics}


def to_json(c: Comparison) -> dict[str, Any]:
    verdicts = []
    for v in c.verdicts:
        lo, hi = _change_ci_pct(v, c)
        t = v.test
        verdicts.append({
            "candidate": v.candidate.label, "change_pct": _num(v.change_pct), "worse_pct": _num(v.worse_pct),
            "change_ci95_pct": [_num(lo), _num(hi)], "difference": t.diff,
            "difference_ci95": [_num(t.ci_low), _num(t.ci_high)], "test": t.test, "t": _num(t.t),
            "df": _num(t.df), "p_value": _num(t.p_value), "significant": t.significant,
            "regression": v.regression, "verdict": v.status,
        })
    return {
        "metric": c.metric.name, "lower_is_better": c.metric.lower_is_better,
        "max_regression_pct": c.max_regression_pct, "regression": c.regression,
        "baseline": _group_json(c.baseline), "candidates": [_group_json(g) for g in c.candidates],
        "verdicts": verdicts,
        "mismatches": {k: [{"key": d.key, "baseline": d.a, "candidate": d.b} for d in ds]
                       for k, ds in c.mismatches.items()},
        "warnings": c.warnings, "note": NOTE, "validity": c.validity.to_dict(),
    }


def render_json(c: Comparison) -> str:
    return json.dumps(to_json(c), indent=2, default=str) + "\n"


CSV_COLUMNS = ("group", "role", "model", "server", "runs", "metric", "lower_is_better", "mean", "ci95_low",
               "ci95_high", "change_pct", "test", "p_value", "verdict")


def render_csv(c: Comparison) -> str:
    """One row per group and metric; the gated metric's candidate rows carry change, test and verdict."""
    verdicts = {id(v.candidate): v for v in c.verdicts}
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for g in c.groups:
        for m in _present_metrics(c):
            e = g.estimate(m)
            v = verdicts.get(id(g)) if m is c.metric else None
            w.writerow([g.label, g.role, g.runs[0].model, g.runs[0].server, len(g.runs), m.name,
                        m.lower_is_better, *("" if not math.isfinite(x) else repr(x)
                                             for x in (e.mean, e.ci_low, e.ci_high)),
                        "" if v is None else repr(v.change_pct), "" if v is None else v.test.test,
                        "" if v is None or not math.isfinite(v.test.p_value) else repr(v.test.p_value),
                        "" if v is None else v.status])
    return out.getvalue()


RENDERERS: dict[str, Callable[[Comparison], str]] = {
    "table": render_table, "markdown": render_markdown, "json": render_json, "csv": render_csv,
}
