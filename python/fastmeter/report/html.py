"""The report as one self-contained HTML page: figures inline as base64 PNG, CSS inline, one tiny inline script;
nothing is fetched from anywhere, so the page opens the same offline, from an archive or an e-mail."""

from __future__ import annotations

import base64
from html import escape
from typing import TYPE_CHECKING

import fastmeter
from fastmeter.report.activity import activity_fit_rows
from fastmeter.report.banner import banner
from fastmeter.report.tables import (
    Row,
    fingerprint_rows,
    sampler_rows,
    slo_text,
    summary_tables,
    sweep_title,
    warnings,
)

if TYPE_CHECKING:
    from fastmeter.report.figures import FigureOut
    from fastmeter.report.load import Report

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d232b; margin: 0;
       background: #f5f6f8; }
main { max-width: 1280px; margin: 0 auto; padding: 8px 24px 40px; }
h1 { font-size: 22px; margin: 18px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #d5d9e0; }
h3 { font-size: 15px; margin: 18px 0 6px; }
.meta { color: #5a6472; margin: 0 0 8px; }
.scroll { overflow-x: auto; background: #fff; border: 1px solid #d5d9e0; border-radius: 6px; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eceef2; text-align: right; vertical-align: top; }
th { background: #eef1f5; font-weight: 600; position: sticky; top: 0; }
th:first-child, td:first-child { text-align: left; white-space: nowrap; }
td { font-variant-numeric: tabular-nums; }
table.kv th, table.kv td { text-align: left; max-width: 420px; overflow-wrap: anywhere; }
tr.differs td { background: #fff6d9; }
tr.best td { background: #e5f5e8; font-weight: 600; }
figure { margin: 12px 0; background: #fff; border: 1px solid #d5d9e0; border-radius: 6px; padding: 8px; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: #5a6472; font-size: 13px; margin-top: 4px; }
ul.warn { background: #fff4e5; border: 1px solid #f0c48a; border-radius: 6px; padding: 8px 8px 8px 28px; }
p.ok { color: #2d6a3e; }
div.validity { border-radius: 6px; padding: 4px 12px; margin: 8px 0; border: 1px solid; }
div.validity.measured { background: #e5f5e8; border-color: #9fd3ab; }
div.validity.degraded { background: #fff4e5; border-color: #f0c48a; }
div.validity.synthetic, div.validity.invalid { background: #fde8e8; border-color: #e59a9a; }
"""

# Marks the page once every figure has decoded, and how many summary tables overflow the window (a headless browser
# reads the attributes back from the DOM).
_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll("img"));
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  document.documentElement.setAttribute("data-figures",
    bad.length ? "broken " + bad.map(function (i) { return i.alt; }).join(", ") : "ready " + imgs.length);
  var wide = Array.prototype.slice.call(document.querySelectorAll(".summary .scroll")).filter(function (d) {
    return d.scrollWidth > d.clientWidth + 1; });
  document.documentElement.setAttribute("data-summary-overflow", String(wide.length));
});
"""


def _table(header: Row, rows: list[Row], classes: list[str] | None = None, kind: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    cls = f' class="{kind}"' if kind else ""
    return f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _figure(f: FigureOut, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure id="fig-{escape(f.name)}"><img src="data:image/png;base64,{data}" alt="{escape(f.title)}">'
            f"<figcaption>{escape(f.title)}</figcaption></figure>")


def _summary(report: Report) -> str:
    best = {s.best for s in report.sweeps if s.best}
    classes = ["best" if r.label in best else "" for r in report.runs]
    note = '<p class="meta">Highlighted: the best operating point under the SLO of its sweep.</p>' if best else ""
    tables = [f"<h3>{escape(title)}</h3>" + _table(header, rows, classes)
              for title, header, rows in summary_tables(report)]
    return '<div class="summary">' + "".join(tables) + "</div>" + note


def _banner(report: Report) -> str:
    b = banner(report)
    items = "".join(f"<li><b>{escape(label)}</b>: {escape(text)}</li>" for label, text in b.lines)
    return (f'<div class="validity {b.verdict.value}" id="validity"><p><b>{escape(b.headline)}</b></p>'
            f"{f'<ul>{items}</ul>' if items else ''}</div>")


def _warnings(report: Report) -> str:
    items = [f"<li><b>{escape(r.label)}</b>: {escape(w)}</li>" for r in report.runs for w in warnings(r)]
    return f'<ul class="warn">{"".join(items)}</ul>' if items else '<p class="ok">No warnings.</p>'


def _slo_lines(report: Report) -> str:
    lines = []
    for s in report.sweeps:
        best = s.best or "none meets the SLO"
        lines.append(f"<li><b>{escape(sweep_title(s.label))}</b>: SLO {escape(slo_text(s))}; best point "
                     f"<b>{escape(best)}</b></li>")
    return f"<ul>{''.join(lines)}</ul>" if lines else ""


def _fingerprint(report: Report, section: str) -> str:
    header, rows = fingerprint_rows(report, section)
    if not rows:
        return '<p class="meta">Not recorded.</p>'
    return _table(header, [r for r, _ in rows], ["differs" if d else "" for _, d in rows], kind="kv")


def render_html(report: Report, figures: list[tuple[FigureOut, bytes]]) -> str:
    """The page: `figures` are (figure, PNG bytes) as figures.build_figures ordered them."""
    current: str | None = None
    overview, per_run = [], []
    for f, png in figures:
        if f.run is None:
            overview += [f"<h3>{escape(f.title)}</h3>", _figure(f, png)]
        else:
            if f.run != current:
                per_run.append(f'<h3 id="run-{escape(f.run)}">{escape(f.run)}</h3>')
                current = f.run
            per_run.append(_figure(f, png))
    sources = ", ".join(escape(str(r.path)) for r in report.runs)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>fastmeter report: {escape(', '.join(r.label for r in report.runs))}</title>",
        f"<style>{_CSS}</style><script>{_SCRIPT}</script></head><body><main>",
        "<h1>fastmeter report</h1>", _banner(report),
        f'<p class="meta">{len(report.runs)} run(s), fastmeter {escape(fastmeter.__version__)}. '
        f"Sources: {sources}</p>",
        "<h2>Warnings</h2>", _warnings(report),
        "<h2>Summary</h2>", _summary(report), _slo_lines(report),
    ]
    if overview:
        parts += ["<h2>Runs compared</h2>", *overview]
    parts += ["<h2>Each run</h2>", *per_run]
    header, rows = sampler_rows(report)
    parts += ["<h2>Sampler quality</h2>", _table(header, rows)]
    if (fits := activity_fit_rows(report)) is not None:  # runs with attribution = "activity"
        parts += ["<h2>Activity power model</h2>", _table(*fits)]
    parts += ["<h2>Environment</h2>",
              '<p class="meta">Highlighted rows differ between runs.</p>' if len(report.runs) > 1 else "",
              "<h3>Controlled (should match between runs)</h3>", _fingerprint(report, "controlled"),
              "<h3>Observed (state at the start of each run)</h3>", _fingerprint(report, "observed"),
              "</main></body></html>"]
    return "\n".join(parts) + "\n"

