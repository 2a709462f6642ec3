"""Reading run and sweep directories: the structure they load into, requests in flight, and one clear error for
every kind of bad input."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fastmeter.errors import FastmeterError
from fastmeter.report import load_report
from fastmeter.report.load import in_flight


def test_runs_and_sweeps_load_in_order_with_unique_labels(report_runs: dict[str, Path]) -> None:
    report = load_report([report_runs["low"], report_runs["high"], report_runs["sweep"]])
    assert [r.label for r in report.runs] == ["low", "high", "sweep/concurrency-1", "sweep/concurrency-4"]
    assert [r.label for r in report.loose] == ["low", "high"]
    (sweep,) = report.sweeps
    sweep_json = json.loads((report_runs["sweep"] / "sweep.json").read_text())
    assert sweep.best == f"sweep/{sweep_json['best']}" and sweep_json["best"] is not None
    assert sweep.slo == {"slo_ttft_p99_ms": 5000.0, "slo_itl_p99_ms": None}
    for run in report.runs:
        assert run.summary == json.loads((run.path / "run.json").read_text())["summary"]
        assert run.measured_requests().num_rows == run.summary["requests_ok"] == 8
        assert run.trace.complete and run.trace.channels == ["gpu0"]


def test_same_directory_names_get_longer_labels(report_runs: dict[str, Path], tmp_path: Path) -> None:
    for parent in ("x", "y"):
        shutil.copytree(report_runs["low"], tmp_path / parent / "run")
    report = load_report([tmp_path / "x" / "run", tmp_path / "y" / "run"])
    assert [r.label for r in report.runs] == ["x/run", "y/run"]


def _requests(send: list[int | None], end: list[int | None]) -> pa.Table:
    return pa.table({"send_ns": pa.array(send, pa.int64()), "end_ns": pa.array(end, pa.int64())})


def test_in_flight_is_the_exact_step_function() -> None:
    # [10,40) [20,30) [30,50): a request ending at 30 and one starting at 30 never overlap (ends first).
    t, n = in_flight(_requests([10, 20, 30], [40, 30, 50]), end_default_ns=0)
    assert t.tolist() == [10, 20, 30, 40, 50]
    assert n.tolist() == [1, 2, 2, 1, 0]


def test_in_flight_counts_unfinished_requests_until_the_end_and_ignores_unsent_ones() -> None:
    t, n = in_flight(_requests([100, None, 150], [None, None, 120]), end_default_ns=200)
    assert t.tolist() == [100, 120, 150, 200] and n.tolist() == [1, 0, 1, 0]


def test_in_flight_keeps_nanoseconds_exact_on_a_long_uptime() -> None:
    base = 2**62  # far beyond float64's exact integers: a float round trip would merge these instants
    t, n = in_flight(_requests([base + 1, base + 2], [base + 3, base + 4]), end_default_ns=0)
    assert t.tolist() == [base + 1, base + 2, base + 3, base + 4] and n.tolist() == [1, 2, 1, 0]
    assert t.dtype == np.int64


def _copy(report_runs: dict[str, Path], tmp_path: Path, name: str = "low") -> Path:
    return Path(shutil.copytree(report_runs[name], tmp_path / name))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "run.json").unlink(), "not a run directory (no run.json or sweep.json"),
        (lambda d: (d / "run.json").write_text("{ not json"), "run.json is corrupt (not valid JSON"),
        (lambda d: (d / "run.json").write_text("[1, 2]"), "run.json is corrupt (expected a JSON object)"),
        (lambda d: (d / "run.json").write_text('{"a": 1}'), "is not a fastmeter run.json"),
        (lambda d: (d / "requests.arrow").write_bytes(b"garbage"), "requests.arrow is corrupt"),
        (lambda d: (d / "requests.arrow").unlink(), "requests.arrow is missing"),
        (lambda d: (d / "samples.arrow").unlink(), "samples.arrow is missing"),
        (lambda d: (d / "samples.arrow").write_bytes(b"PAR1 garbage"), "is not a readable fastmeter trace"),
    ],
)
def test_a_damaged_run_directory_is_one_clear_error(report_runs: dict[str, Path], tmp_path: Path, damage,
                                                    message: str) -> None:
    run = _copy(report_runs, tmp_path)
    damage(run)
    with pytest.raises(FastmeterError, match=re.escape(message)) as exc:
        load_report([run])
    assert str(run) in str(exc.value)


def test_a_requests_table_without_energy_columns_is_rejected(report_runs: dict[str, Path], tmp_path: Path) -> None:
    run = _copy(report_runs, tmp_path)
    with pa.OSFile(str(run / "requests.arrow"), "wb") as f, pa.ipc.new_file(f, pa.schema([("x", pa.int8())])) as w:
        w.write_table(pa.table({"x": pa.array([1], pa.int8())}))
    with pytest.raises(FastmeterError, match=r"requests.arrow lacks columns warmup, send_ns"):
        load_report([run])


def test_not_a_directory_and_no_arguments(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FastmeterError, match="file.txt is not a directory; pass a run directory"):
        load_report([tmp_path / "file.txt"])
    with pytest.raises(FastmeterError, match="no run directories given"):
        load_report([])


def test_a_corrupt_sweep_json_and_a_missing_point(report_runs: dict[str, Path], tmp_path: Path) -> None:
    sweep = _copy(report_runs, tmp_path, "sweep")
    (sweep / "sweep.json").write_text('{"best": null}')
    with pytest.raises(FastmeterError, match="sweep.json is corrupt \\(no list of points\\)"):
        load_report([sweep])
    (sweep / "sweep.json").write_text(json.dumps({"points": [{"point": "concurrency-9"}]}))
    with pytest.raises(FastmeterError, match="concurrency-9/run.json"):
        load_report([sweep])
