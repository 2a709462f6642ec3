"""The report's table of activity power-model fits (runs with `attribution = "activity"`, docs/attribution.md):
each coefficient with its 95 % confidence interval, R², intervals fitted, and whether the fit was used."""

from __future__ import annotations

from typing import Any

from fastmeter.report.load import Report
from fastmeter.report.tables import Row, fmt

COLUMNS = (
    ("idle_w", "idle W"),
    ("prefill_j_per_token", "J / prefill token"),
    ("decode_j_per_token", "J / decode token"),
    ("seq_w", "W / sequence"),
)


def _coef(c: dict[str, Any] | None) -> str:
    if not c or c.get("value") is None:
        return "—"
    lo, hi = c.get("ci95") or (None, None)
    return f"{fmt(c['value'], '.3g')} [{fmt(lo, '.3g')}, {fmt(hi, '.3g')}]"


def activity_fit_rows(report: Report) -> tuple[Row, list[Row]] | None:
    """(header, rows) for the runs that fitted a power model; None when no run did."""
    header = ["run", *(label for _, label in COLUMNS), "R²", "intervals", "used"]
    rows = []
    for r in report.runs:
        fit = (r.meta.get("attribution") or {}).get("activity_fit")
        if not isinstance(fit, dict):
            continue
        coefs = fit.get("coefficients") or {}
        rejected = fit.get("rejected") or {}
        used = "yes" if fit.get("used") else f"no: {rejected.get('code', 'rejected')} (time-share served)"
        rows.append(
            [
                r.label,
                *(_coef(coefs.get(k)) for k, _ in COLUMNS),
                fmt(fit.get("r2"), ".3f"),
                fmt(fit.get("intervals"), "d"),
                used,
            ]
        )
    return (header, rows) if rows else None
