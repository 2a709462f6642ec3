"""The report's tables and text: headline figures straight from run.json, warnings raised by exactly the
conditions they name, fingerprint rows that flag differences, and the power series drawn from a trace."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from fastmeter.errors import FastmeterError
from fastmeter.report import load_report, render_text
from fastmeter.report.figures import power_series
from fastmeter.report.tables import fingerprint_rows, fmt, headline_rows, sampler_rows, warnings


def test_headline_rows_are_run_json_figures(report_runs: dict[str, Path]) -> None:
    report = load_report([report_runs["low"], report_runs["sweep"]])
    header, rows = headline_rows(report)
    assert "accuracy" not in header  # no run has one
    for run, row in zip(report.runs, rows):
        cells = dict(zip(header, row))
        s = run.summary
        assert cells["run"] == run.label
        assert cells["J / output token"] == format(s["energy_per_output_token_j"], ".4g")
        assert cells["output tokens / s"] == format(s["output_tokens_per_s"], ".1f")
        assert cells["TTFT p99 ms"] == format(s["ttft_ms_p99"], ".1f")
        assert cells["requests ok"] == "8"
    low = dict(zip(header, rows[0]))
    assert low["idle baseline W"] == format(report.runs[0].summary["idle_power_w"], ".1f")
    assert dict(zip(header, rows[1]))["idle baseline W"] == "—"  # no baseline measured in the sweep


def test_accuracy_columns_appear_when_a_run_has_accuracy(report_runs: dict[str, Path], tmp_path: Path) -> None:
    run = Path(shutil.copytree(report_runs["low"], tmp_path / "acc"))
    meta = json.loads((run / "run.json").read_text())
    meta["summary"].update(accuracy=0.75, accuracy_per_kwh=1234.5)
    (run / "run.json").write_text(json.dumps(meta))
    header, rows = headline_rows(load_report([run, report_runs["high"]]))
    assert header[-2:] == ["accuracy", "accuracy / kWh"]
    assert rows[0][-2:] == ["0.75", "1234"] and rows[1][-2:] == ["—", "—"]


def test_fmt_marks_missing_figures() -> None:
    assert fmt(None, ".1f") == fmt(float("nan"), ".1f") == fmt(float("inf"), ".1f") == "—"
    assert fmt(2.345, ".2f") == "2.35"


def _edited(report_runs: dict[str, Path], tmp_path: Path, **changes: object) -> Path:
    run = Path(shutil.copytree(report_runs["high"], tmp_path / "edited"))
    meta = json.loads((run / "run.json").read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            meta[section][field] = value
        else:
            meta[section] = value
    (run / "run.json").write_text(json.dumps(meta))
    return run


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"sampler_stats__dropped": 3}, "3 samples dropped"),
        ({"sampler_stats__missed": 0, "sampler_stats__polls": 100}, None),
        ({"sampler_stats__missed": 1, "sampler_stats__polls": 99}, None),  # 1 % is tolerated
        ({"sampler_stats__missed": 2, "sampler_stats__polls": 98}, "2 of 100 sampling deadlines skipped (2.0%)"),
        ({"interrupted": True}, "interrupted: figures cover only what was measured"),
        ({"sampler_stats__errors": {"gpu0": "GPU is lost"}}, "channel gpu0 failed: GPU is lost"),
        ({"summary__requests_failed": 2}, "2 requests failed"),
        ({"summary__net_energy_j": -1.0}, "net energy is negative"),
    ],
)
def test_each_warning_fires_on_its_condition(report_runs: dict[str, Path], tmp_path: Path,
                                             changes: dict[str, object], expected: str | None) -> None:
    base = {"sampler_stats__missed": 0, "sampler_stats__dropped": 0}  # the recorded host may have been busy
    (run,) = load_report([_edited(report_runs, tmp_path, **{**base, **changes})]).runs
    found = warnings(run)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and expected in found[0]


def test_sampler_rows_show_the_recorded_statistics(report_runs: dict[str, Path]) -> None:
    report = load_report([report_runs["low"]])
    header, (row,) = sampler_rows(report)
    cells = dict(zip(header, row))
    stats = report.runs[0].meta["sampler_stats"]
    assert cells["period µs"] == "1000"
    assert cells["dropped"] == str(stats["dropped"]) and cells["missed"] == str(stats["missed"])
    assert cells["counter update period"] == f"gpu0 {stats['update_period_s']['gpu0'] * 1e3:.3g} ms"
    assert cells["channel errors"] == "none"
    # The sampler's own health over the run: its process's RSS and the latency of the energy queries it answered.
    assert cells["RSS MiB"] == f"{stats['rss_bytes'] / 2**20:.0f}"
    assert stats["queries"] > 0
    assert cells["queries p50/p99 µs"] == f"{stats['query_p50_us']:.0f}/{stats['query_p99_us']:.0f}"


def test_fingerprint_rows_flag_keys_that_differ(report_runs: dict[str, Path], tmp_path: Path) -> None:
    run = _edited(report_runs, tmp_path)
    meta = json.loads((run / "run.json").read_text())
    meta["fingerprint"]["controlled"]["gpu"]["devices"][0]["power_limit_w"] = 350.0
    (run / "run.json").write_text(json.dumps(meta))
    header, rows = fingerprint_rows(load_report([report_runs["high"], run]), "controlled")
    assert header == ["key", "high", "edited"]
    flagged = {r[0]: r[1:] for r, differs in rows if differs}
    assert flagged == {"gpu.devices[0].power_limit_w": ["700.0", "350.0"]}
    keys = [r[0] for r, _ in rows]
    assert "gpu.driver_version" in keys and "os.kernel" in keys


def test_text_summary_names_runs_best_point_and_warnings(report_runs: dict[str, Path], tmp_path: Path) -> None:
    edited = _edited(report_runs, tmp_path, sampler_stats__dropped=5)
    report = load_report([edited, report_runs["sweep"]])
    text = render_text(report)
    best = report.sweeps[0].best
    assert f"\nsweep: SLO TTFT p99 <= 5000 ms; best point {best}" in text
    assert "edited: 5 samples dropped" in text
    lines = text.splitlines()
    assert lines[0].startswith("NOT A MEASUREMENT")  # the runs read the NVML emulator: the banner says so first
    assert any("[emulated_source]" in line for line in lines[1:4])
    assert next(line for line in lines if line.startswith("run ")).split()[:4] == ["run", "J", "/", "output"]
    row = next(line for line in lines if line.startswith("edited "))
    assert format(report.runs[0].summary["energy_per_output_token_j"], ".4g") in row.split()


def test_power_series_keeps_readings_and_bins_long_traces() -> None:
    t = np.arange(10, dtype=np.int64) * 1_000_000
    p = np.arange(10, dtype=float)
    e = np.cumsum(p) * 1e-3
    t2, p2 = power_series(t, e, p)
    assert t2.tolist() == t.tolist() and p2.tolist() == p.tolist()
    t3, p3 = power_series(t, e, p, max_points=5)  # bins of two readings: their means
    assert t3.tolist() == t[::2].tolist() and p3.tolist() == [0.5, 2.5, 4.5, 6.5, 8.5]


def test_power_series_of_a_counter_only_channel_is_the_energy_slope() -> None:
    t = np.arange(0, 11, dtype=np.int64) * 100_000_000  # 0.1 s apart
    e = np.array([0, 10, 20, 30, 40, 50, 70, 90, 110, 130, 150], dtype=float)  # 100 W, then 200 W
    t2, p2 = power_series(t, e, np.full(len(t), np.nan))
    assert t2.tolist() == t[:-1].tolist()
    assert p2 == pytest.approx([100] * 5 + [200] * 5)
    assert len(power_series(t[:1], e[:1], e[:1])[0]) == 0


def test_figure_names_stay_unique_when_labels_differ_only_in_unsafe_characters(report_runs: dict[str, Path],
                                                                               tmp_path: Path) -> None:
    from fastmeter.report.figures import build_figures

    shutil.copytree(report_runs["low"], tmp_path / "a b")
    shutil.copytree(report_runs["high"], tmp_path / "a_b")
    report = load_report([tmp_path / "a b", tmp_path / "a_b"])
    assert [r.label for r in report.runs] == ["a b", "a_b"]
    names = [f.name for f in build_figures(report)]
    assert names == ["runs", "a_b-power", "a_b-requests", "a_b-telemetry", "a_b-2-power", "a_b-2-requests",
                     "a_b-2-telemetry"]


def test_sampler_period_is_read_from_the_recorded_sampler_settings(report_runs: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    """A run at the default period has no period in its flags; the samples' metadata records what the sampler
    ran at."""
    run = _edited(report_runs, tmp_path, config={})
    header, (row,) = sampler_rows(load_report([run]))
    recorded = load_report([run]).runs[0].trace.metadata["sampler"]["period_us"]
    assert dict(zip(header, row))["period µs"] == str(recorded) != "—"


@pytest.mark.parametrize(("p99_us", "shown"), [(20000.0, "≥ 19999"), (19998.0, "19998"), (None, "—")])
def test_jitter_in_the_histograms_top_bin_is_not_shown_as_a_value(report_runs: dict[str, Path], tmp_path: Path,
                                                                  p99_us: float | None, shown: str) -> None:
    stats = json.loads((report_runs["high"] / "run.json").read_text())["sampler_stats"]
    run = _edited(report_runs, tmp_path, sampler_stats={**stats, "jitter_p99_us": p99_us, "jitter_max_us": 31000.0})
    header, (row,) = sampler_rows(load_report([run]))
    assert dict(zip(header, row))["jitter p99 µs"] == shown


@pytest.mark.parametrize(("where", "value", "message"), [
    ("summary__energy_j", "12.5", "'energy_j' must be a number or null, got '12.5'"),
    ("summary__requests_ok", [8], "'requests_ok' must be a number or null"),
    ("summary__energy_j", 10**400, "'energy_j' must be a number or null, got 1000"),  # no float holds it
    ("sampler_stats", {"jitter_p99_us": "slow"}, "'jitter_p99_us' must be a number or null"),
    ("span_ns", [1.5, "x"], "'span_ns' must be a list of two integers or null"),
    ("idle_baseline_w", {"gpu0": "100"}, "'idle_baseline_w' must be an object of numbers or null"),
    ("config", {"server": "openai"}, "config table 'server' must be an object"),
])
def test_run_json_with_values_of_the_wrong_type_is_one_clear_error(report_runs: dict[str, Path], tmp_path: Path,
                                                                  where: str, value: object, message: str) -> None:
    run = _edited(report_runs, tmp_path, **{where: value})
    with pytest.raises(FastmeterError, match=re.escape(message)) as exc:
        render_text(load_report([run]))
    assert str(run / "run.json") in str(exc.value)


def test_html_escapes_recorded_text(report_runs: dict[str, Path], tmp_path: Path) -> None:
    from fastmeter.report.html import render_html

    evil = "<script>alert(1)</script>|"
    run = _edited(report_runs, tmp_path, config={"server": {"model": evil}})
    meta = json.loads((run / "run.json").read_text())
    meta["fingerprint"]["controlled"]["gpu"]["driver_version"] = evil
    meta["sampler_stats"]["errors"] = {"gpu0": evil}
    (run / "run.json").write_text(json.dumps(meta))
    html = render_html(load_report([run]), [])
    assert "<script>alert" not in html and html.count("&lt;script&gt;alert(1)&lt;/script&gt;|") >= 2
