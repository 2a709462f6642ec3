"""The HTML report in a real headless browser (Chromium): every figure decodes, and the page logs nothing to the
console. The checker itself is tested on pages with an injected script error and a broken image, so a page that
renders badly cannot pass unnoticed.

Without a chromium binary these tests skip, unless FASTMETER_REQUIRE_BROWSER=1 (CI), where they fail.
"""

from __future__ import annotations

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


def render(chromium: str, page: Path, profile: Path) -> Rendered:
    """Load `page` from a file:// URL in headless Chromium and read back the DOM and the console log."""
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
            f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", page.resolve().as_uri()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    m = re.search(r'<html[^>]*\sdata-figures="([^"]*)"', done.stdout)
    return Rendered(m.group(1) if m else None, [c.group(1) for c in map(CONSOLE_LINE.search,
                                                                         done.stderr.splitlines()) if c])


@pytest.fixture(scope="module")
def page(chromium: str, report_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report_browser") / "report.html"
    r = CliRunner().invoke(main, ["report", str(report_runs["low"]), str(report_runs["high"]),
                                  str(report_runs["sweep"]), "--html", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_the_report_renders_every_figure_without_console_messages(chromium: str, page: Path, tmp_path: Path) -> None:
    n_images = page.read_text().count("<img ")
    assert n_images == 10
    got = render(chromium, page, tmp_path / "profile")
    assert got.console == []
    assert got.figures == f"ready {n_images}"


def test_the_checker_sees_an_injected_script_error(chromium: str, page: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text(page.read_text().replace("<script>", "<script>undefinedFunction();</script><script>", 1))
    got = render(chromium, bad, tmp_path / "profile")
    assert any("Uncaught ReferenceError: undefinedFunction is not defined" in c for c in got.console), got.console
    assert got.figures == "ready 10"  # the page's own script still ran: only the console tells


def test_the_checker_sees_a_figure_that_does_not_decode(chromium: str, page: Path, tmp_path: Path) -> None:
    html = page.read_text()
    first = re.search(r'src="data:image/png;base64,([^"]{64})', html)
    assert first is not None
    bad = tmp_path / "broken.html"
    bad.write_text(html.replace(first.group(1), "A" * 64, 1))  # the PNG signature destroyed
    got = render(chromium, bad, tmp_path / "profile")
    assert got.figures is not None and got.figures.startswith("broken ")
