"""Reports on run directories: a text summary, PNG figures and a self-contained HTML page.

Layers: load (run and sweep directories into a Report) -> tables and figures -> renderers (text, html).
"""

from fastmeter.report.load import Report, Run, Sweep, load_report
from fastmeter.report.text import render_text

__all__ = ["Report", "Run", "Sweep", "load_report", "render_text"]
