"""The decision table that ends a matrix: per server/model, its best load point within the latency SLO (highest
median tokens/J over the repeats), with tokens/J, J/output token, throughput and the ratio to the best entry.

Medians over repeats, with the tokens/J range beside them so a reader sees the spread; invalid cells are left
out (they measured nothing trustworthy), and an entry none of whose points meets the SLO says so (NaN figures).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from fastmeter.bench.sweep import meets_slo
from fastmeter.load.config import BenchSettings
from fastmeter.validity import Verdict

FIGURES = ("output_tokens_per_j", "energy_per_output_token_j", "output_tokens_per_s", "ttft_ms_p99", "itl_ms_p99")


def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def point_medians(cells: Sequence[dict[str, Any]], entry: str, point: str) -> dict[str, Any]:
    """Median of each figure over the valid repeats of one cell (NaN when none), the repeats counted and the
    tokens/J range."""
    runs = [c for c in cells if c["entry"] == entry and c["point"] == point and c["verdict"] != Verdict.INVALID.value]
    out: dict[str, Any] = {"point": point, "repeats": len(runs)}
    for key in FIGURES:
        values = _finite([c.get(key) for c in runs])
        out[key] = statistics.median(values) if values else math.nan
    tpj = _finite([c.get("output_tokens_per_j") for c in runs])
    out["output_tokens_per_j_range"] = [min(tpj), max(tpj)] if tpj else None
    return out


def decision_table(
    cells: Sequence[dict[str, Any]], entries: Sequence[dict[str, str]], points: Sequence[str], slo: BenchSettings
) -> list[dict[str, Any]]:
    """One row per entry ({"name", "server", "model"}), in the configured order."""
    rows = []
    for e in entries:
        medians = [point_medians(cells, e["name"], p) for p in points]
        ok = [m for m in medians if meets_slo(m, slo) and math.isfinite(m["output_tokens_per_j"])]
        best = max(ok, key=lambda m: m["output_tokens_per_j"]) if ok else None
        row = {
            "entry": e["name"],
            "server": e["server"],
            "model": e["model"],
            "best_point": best["point"] if best else None,
            "points": medians,
        }
        row.update({k: best[k] if best else math.nan for k in (*FIGURES, "repeats", "output_tokens_per_j_range")})
        rows.append(row)
    top = max((r["output_tokens_per_j"] for r in rows if r["best_point"]), default=math.nan)
    for r in rows:
        r["ratio_to_best"] = r["output_tokens_per_j"] / top if r["best_point"] and top > 0 else math.nan
    return rows


def best_entry(rows: Sequence[dict[str, Any]]) -> str | None:
    ranked = [r for r in rows if r["best_point"] and math.isfinite(r["ratio_to_best"])]
    return max(ranked, key=lambda r: r["ratio_to_best"])["entry"] if ranked else None


def render_decision(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        f"{'server/model':<28}{'best point':<18}{'tok/J':>9}{'range':>17}{'J/tok':>9}{'tok/s':>9}"
        f"{'TTFT p99':>10}{'ITL p99':>9}{'vs best':>9}"
    )
    lines = ["decision table (medians over repeats; best point within the SLO)", head]
    for r in rows:
        label = f"{r['entry']} ({r['server']}/{r['model']})"
        if not r["best_point"]:
            lines.append(f"{label:<28}no point meets the SLO")
            continue
        lo, hi = r["output_tokens_per_j_range"]
        lines.append(
            f"{label:<28}{r['best_point']:<18}{r['output_tokens_per_j']:>9.3g}{f'{lo:.3g}-{hi:.3g}':>17}"
            f"{r['energy_per_output_token_j']:>9.3g}{r['output_tokens_per_s']:>9.1f}"
            f"{r['ttft_ms_p99']:>10.1f}{r['itl_ms_p99']:>9.2f}{r['ratio_to_best']:>9.3f}"
        )
    return "\n".join(lines)
