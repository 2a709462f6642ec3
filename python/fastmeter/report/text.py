"""The text summary `fastmeter report` prints when asked for no files: headline figures, SLO results and
warnings per run."""

from __future__ import annotations

from fastmeter.report.banner import banner
from fastmeter.report.load import Report
from fastmeter.report.tables import Row, headline_rows, slo_text, sweep_title, warnings

# Columns of the text table (a terminal is narrower than the page): header text as in tables.HEADLINE.
TEXT_COLUMNS = ("J / output token", "output tokens / J", "output tokens / s", "avg power W", "inferences / kWh",
                "energy J", "TTFT p99 ms", "ITL p99 ms", "idle baseline W", "net energy J", "accuracy")


def _aligned(header: Row, rows: list[Row]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    out = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:]))]
        out.append("  ".join(cells).rstrip())
    return out


def render_text(report: Report) -> str:
    header, rows = headline_rows(report)
    keep = [0, *(i for i, h in enumerate(header) if h in TEXT_COLUMNS)]
    b = banner(report)
    lines = [b.headline, *(f"  {label}: {text}" for label, text in b.lines), ""]
    lines += _aligned([header[i] for i in keep], [[r[i] for i in keep] for r in rows])
    for s in report.sweeps:
        lines.append(f"{sweep_title(s.label)}: SLO {slo_text(s)}; best point {s.best or 'none meets the SLO'}")
    for note in report.notes:
        lines += ["", note]
    found = [f"  {r.label}: {w}" for r in report.runs for w in warnings(r)]
    lines += ["", "warnings:", *found] if found else ["", "no warnings"]
    return "\n".join(lines)
