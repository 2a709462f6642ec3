"""`fastmeter report` end to end on recorded runs: text summary, PNG figures, the HTML page's content, and the
exit code and one-line message for bad input."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from fastmeter.report import load_report
from fastmeter.report.load import in_flight


def _run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["report", *args])
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def rendered(report_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One report over every recorded run: (HTML page, PNG folder)."""
    out = tmp_path_factory.mktemp("report_out")
    code, _, err = _run(*(str(report_runs[k]) for k in ("low", "high", "sweep")), "--html", str(out / "r.html"),
                        "--png", str(out / "png"))
    assert code == 0, err
    return out / "r.html", out / "png"


EXPECTED_PNGS = {"runs", "sweep-sweep", "low-power", "low-requests", "high-power", "high-requests",
                 "sweep_concurrency-1-power", "sweep_concurrency-1-requests", "sweep_concurrency-4-power",
                 "sweep_concurrency-4-requests"}
# Every run was recorded with telemetry (bench's default 20 Hz): one telemetry figure each.
EXPECTED_PNGS |= {f"{run}-telemetry" for run in ("low", "high", "sweep_concurrency-1", "sweep_concurrency-4")}


def _decode_png(data: bytes) -> np.ndarray:
    from io import BytesIO

    from matplotlib.image import imread

    return imread(BytesIO(data), format="png")


def test_png_figures_are_written_and_not_blank(rendered: tuple[Path, Path]) -> None:
    _, png_dir = rendered
    assert {p.stem for p in png_dir.glob("*.png")} == EXPECTED_PNGS
    for p in png_dir.glob("*.png"):
        pixels = _decode_png(p.read_bytes())
        assert pixels.shape[0] > 200 and pixels.shape[1] > 600
        assert pixels[..., :3].std() > 0.05, f"{p.name} is blank"


def test_html_is_self_contained_and_holds_every_figure(rendered: tuple[Path, Path]) -> None:
    html = rendered[0].read_text()
    # Nothing fetched: every src/href is inline data, and no stylesheet, font or script is linked.
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert not re.search(r"<link|@import|url\(|https?://", html)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == len(EXPECTED_PNGS)
    for b64 in images:
        assert _decode_png(base64.b64decode(b64))[..., :3].std() > 0.05


def test_html_tables_hold_the_runs_figures(report_runs: dict[str, Path], rendered: tuple[Path, Path]) -> None:
    html = rendered[0].read_text()
    report = load_report([report_runs[k] for k in ("low", "high", "sweep")])
    for run in report.runs:
        s = run.summary
        assert f"<td>{run.label}</td><td>{s['energy_per_output_token_j']:.4g}</td>" in html
    best = report.sweeps[0].best
    assert f'<tr class="best"><td>{best}</td>' in html
    assert "best point <b>" + best + "</b>" in html
    for text in ("Controlled (should match between runs)", "gpu.devices[0].power_limit_w", "Sampler quality",
                 "jitter p99 µs", "counter update period"):
        assert text in html


def test_in_flight_reaches_the_configured_concurrency(report_runs: dict[str, Path]) -> None:
    """The overlay's ground truth: a closed loop of concurrency c with 8 equal requests keeps c in flight."""
    report = load_report([report_runs["low"], report_runs["sweep"]])
    for run, c in zip(report.runs, (2, 1, 4)):
        _, n = in_flight(run.measured_requests(), run.meta["span_ns"][1])
        assert n.max() == c and n[-1] == 0


def test_text_summary_without_output_options(report_runs: dict[str, Path]) -> None:
    code, out, _ = _run(str(report_runs["low"]), str(report_runs["sweep"]))
    assert code == 0
    low = json.loads((report_runs["low"] / "run.json").read_text())["summary"]
    row = next(line for line in out.splitlines() if line.startswith("low "))
    assert f"{low['energy_per_output_token_j']:.4g}" in row.split()
    # the sweep directory is named "sweep": its line is not headed "sweep sweep"
    assert "\nsweep: SLO TTFT p99 <= 5000 ms; best point sweep/concurrency-" in out
    assert "sweep sweep" not in out.lower()


@pytest.mark.parametrize(
    ("run_json", "message"),
    [(None, "is not a run directory (no run.json or sweep.json in it)"), ("{", "run.json is corrupt (not valid JSON")],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path: Path, run_json: str | None, message: str) -> None:
    d = tmp_path / "run"
    d.mkdir()
    if run_json is not None:
        (d / "run.json").write_text(run_json)
    code, out, err = _run(str(d), "--html", str(tmp_path / "r.html"))
    assert code == 2 and out == ""
    assert err.startswith("Error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def _estimated_width_px(table_html: str) -> float:
    """A lower bound on a table's rendered width at the page's 13 px font: each column as wide as its longest
    unbreakable word (headers wrap at spaces, cells do not), at 7 px per character, plus 20 px of padding."""
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table_html)
    cells = [re.findall(r"<t[hd]>(.*?)</t[hd]>", r) for r in rows]
    widths = [0.0] * len(cells[0])
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            words = c.split() if i == 0 else [c]
            widths[j] = max(widths[j], max((len(w) for w in words), default=0) * 7.0 + 20)
    return sum(widths)


def test_summary_tables_fit_a_1400_px_window(report_runs: dict[str, Path], tmp_path: Path) -> None:
    """Every headline column (accuracy ones included) and a descriptive run name; the browser test measures the
    same page in Chromium (tests/integration/test_report_browser.py)."""
    run = Path(shutil.copytree(report_runs["high"], tmp_path / "llama-3.1-8b-instruct-c16-bf16"))
    meta = json.loads((run / "run.json").read_text())
    meta["summary"].update(accuracy=0.8125, accuracy_per_kwh=123456.7)
    (run / "run.json").write_text(json.dumps(meta))
    page = tmp_path / "r.html"
    code, _, err = _run(str(report_runs["low"]), str(run), str(report_runs["sweep"]), "--html", str(page))
    assert code == 0, err
    html = page.read_text()
    summary = html.split("<h2>Summary</h2>", 1)[1].split("<h2>", 1)[0]
    tables = re.findall(r"<table[^>]*>.*?</table>", summary)
    assert tables
    content_px = 1280 - 2 * 24  # main's max-width less its padding (the page's CSS)
    assert all(_estimated_width_px(t) <= content_px for t in tables), [_estimated_width_px(t) for t in tables]
    # together they still hold every headline figure
    assert sum(t.count("<th>") - 1 for t in tables) == 18
    assert "sweep sweep" not in html.lower()


def test_report_on_a_trace_file_points_to_show(tmp_path: Path) -> None:
    trace = tmp_path / "first-trace.arrow"
    trace.write_bytes(b"ARROW1")
    code, out, err = _run(str(trace))
    assert code == 2 and out == ""
    assert f"{trace} is a trace file: use `fastmeter show {trace}`" in err


def test_html_has_the_gpu_telemetry_table(report_runs: dict[str, Path], rendered: tuple[Path, Path]) -> None:
    from fastmeter.report.telemetry import telemetry_rows

    html = rendered[0].read_text()
    assert "<h2>GPU telemetry</h2>" in html and 'id="fig-low-telemetry"' in html
    header, rows = telemetry_rows(load_report([report_runs["low"], report_runs["high"]]))
    assert [r[:2] for r in rows] == [["low", "gpu0"], ["high", "gpu0"]]
    for row in rows:
        assert all(cell in html for cell in row[2:])
    # The emulated GPU reports utilization 0 (the emulator's default): never busy, so no J per busy second.
    assert {r[header.index("mean util %")] for r in rows} == {"0.0"}
    assert {r[header.index("J / GPU-busy s")] for r in rows} == {"—"}


def test_text_summary_has_the_gpu_telemetry_table(report_runs: dict[str, Path]) -> None:
    code, out, _ = _run(str(report_runs["low"]))
    assert code == 0
    lines = out.splitlines()
    i = lines.index("GPU telemetry over the measured span:")
    assert lines[i + 1].split()[:3] == ["run", "GPU", "mean"] and lines[i + 2].split()[:3] == ["low", "gpu0", "0.0"]
