"""The HTML report in a real headless browser (Chromium): every figure decodes, and the page logs nothing to the
console. The checker itself is tested on pages with an injected script error and a broken image, so a page that
renders badly cannot pass unnoticed.

Without a chromium binary these tests skip, unless FASTMETER_REQUIRE_BROWSER=1 (CI), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from fastmeter.cli import main

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
# Chromium's own log line for every console message of a page (any level, uncaught errors included), e.g.
# `[12:12:1129/164457.555047:INFO:CONSOLE:27] "Uncaught ReferenceError: ...", source: file:///... (27)`.
CONSOLE_LINE = re.compile(r":CONSOLE[:(]\d*\)?\]\s*(.*)")


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser binary; checked before anything is recorded, so a missing one skips (or fails) at once."""
    for name in BROWSERS:
        if path := shutil.which(name):
            return path
    reason = f"no headless browser found (looked for {', '.join(BROWSERS)} on PATH; apt-get install chromium)"
    if os.environ.get("FASTMETER_REQUIRE_BROWSER") == "1":
        pytest.fail(f"FASTMETER_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@dataclass
class Rendered:
    figures: str | None  # the page's data-figures attribute after load: "ready N" or "broken <alts>"
    console: list[str]  # console messages the page logged
    summary_overflow: str | None  # how many summary tables are wider than the window


def render(chromium: str, page: Path, profile: Path, width_px: int = 1400) -> Rendered:
    """Load `page` from a file:// URL in headless Chromium and read back the DOM and the console log."""
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
            f"--user-data-dir={profile}", f"--window-size={width_px},900", "--virtual-time-budget=10000",
            "--dump-dom", page.resolve().as_uri()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    m = re.search(r'<html[^>]*\sdata-figures="([^"]*)"', done.stdout)
    o = re.search(r'<html[^>]*\sdata-summary-overflow="([^"]*)"', done.stdout)
    return Rendered(m.group(1) if m else None, [c.group(1) for c in map(CONSOLE_LINE.search,
                                                                         done.stderr.splitlines()) if c],
                    o.group(1) if o else None)


@pytest.fixture(scope="module")
def page(chromium: str, report_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report_browser") / "report.html"
    r = CliRunner().invoke(main, ["report", str(report_runs["low"]), str(report_runs["high"]),
                                  str(report_runs["sweep"]), "--html", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_the_report_renders_every_figure_without_console_messages(chromium: str, page: Path, tmp_path: Path) -> None:
    n_images = page.read_text().count("<img ")
    assert n_images == 14  # 2 comparisons + 4 runs x (power, requests, telemetry)
    got = render(chromium, page, tmp_path / "profile")
    assert got.console == []
    assert got.figures == f"ready {n_images}"


def test_the_summary_fits_a_1400_px_window(chromium: str, report_runs: dict[str, Path], tmp_path: Path) -> None:
    """Every headline column (accuracy ones included) and a descriptive run name, in a 1400 px window."""
    run = Path(shutil.copytree(report_runs["high"], tmp_path / "llama-3.1-8b-instruct-c16-bf16"))
    meta = json.loads((run / "run.json").read_text())
    meta["summary"].update(accuracy=0.8125, accuracy_per_kwh=123456.7)
    (run / "run.json").write_text(json.dumps(meta))
    page = tmp_path / "wide.html"
    r = CliRunner().invoke(main, ["report", str(report_runs["low"]), str(run), str(report_runs["sweep"]),
                                  "--html", str(page)])
    assert r.exit_code == 0, r.output
    assert render(chromium, page, tmp_path / "profile", width_px=1400).summary_overflow == "0"
    # the check can fail: in a narrow window the same tables overflow
    assert render(chromium, page, tmp_path / "narrow", width_px=500).summary_overflow not in (None, "0")


def test_the_checker_sees_an_injected_script_error(chromium: str, page: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text(page.read_text().replace("<script>", "<script>undefinedFunction();</script><script>", 1))
    got = render(chromium, bad, tmp_path / "profile")
    assert any("Uncaught ReferenceError: undefinedFunction is not defined" in c for c in got.console), got.console
    assert got.figures == "ready 14"  # the page's own script still ran: only the console tells


def test_the_checker_sees_a_figure_that_does_not_decode(chromium: str, page: Path, tmp_path: Path) -> None:
    html = page.read_text()
    first = re.search(r'src="data:image/png;base64,([^"]{64})', html)
    assert first is not None
    bad = tmp_path / "broken.html"
    bad.write_text(html.replace(first.group(1), "A" * 64, 1))  # the PNG signature destroyed
    got = render(chromium, bad, tmp_path / "profile")
    assert got.figures is not None and got.figures.startswith("broken ")
