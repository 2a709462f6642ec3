"""`fastmeter report`: summarize run directories as text, PNG figures and/or one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import click

from fastmeter.errors import FastmeterError
from fastmeter.report import load_report, render_text


@click.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write one self-contained HTML page (figures and styles inline, nothing fetched).")
@click.option("--png", "png_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write every figure as a PNG file into this directory.")
def report_command(runs: tuple[Path, ...], html_path: Path | None, png_dir: Path | None) -> None:
    """Report on RUNS: run directories or sweep directories written by `fastmeter bench`. Several runs (or a
    sweep) are also compared: throughput against power and J/token against tail latency, with the best point
    under the SLO marked. Without --html or --png, prints a text summary."""
    report = load_report(list(runs))
    if html_path is None and png_dir is None:
        click.echo(render_text(report))
        return
    from fastmeter.report.figures import build_figures, png_bytes
    from fastmeter.report.html import render_html

    figures = [(f, png_bytes(f.figure)) for f in build_figures(report)]
    if png_dir is not None:
        try:
            png_dir.mkdir(parents=True, exist_ok=True)
            for f, png in figures:
                (png_dir / f"{f.name}.png").write_bytes(png)
        except OSError as e:
            raise FastmeterError(f"cannot write figures to {png_dir}: {e.strerror}") from None
        click.echo(f"{len(figures)} figures written to {png_dir}", err=True)
    if html_path is not None:
        try:
            html_path.write_text(render_html(report, figures), encoding="utf-8")
        except OSError as e:
            raise FastmeterError(f"cannot write {html_path}: {e.strerror}") from None
        click.echo(f"report written to {html_path}", err=True)
