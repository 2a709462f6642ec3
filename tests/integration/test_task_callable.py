"""The task runner end to end with a `callable` task (no heavy dependency): `fastmeter bench task.toml` on the NVML
emulator writes batches.arrow, items.arrow and run.json whose energies match the analytic truth within their
bounds, leaves warm-up out, scores the outputs, and keeps what was measured when a batch fails."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from fastmeter.cli import main
from tests.emulators.nvml import FakeNvml, GpuSpec, Square

WORK = """
import os
import signal
import time

def run(items):
    time.sleep(0.004 * len(items))
    if any(x == FAIL_AT for x in items):
        raise RuntimeError("boom at item %d" % FAIL_AT)
    if any(x == SIGINT_AT for x in items):
        os.kill(os.getpid(), signal.SIGINT)
    return [x * 2 if x % 4 else -1 for x in items]

def score(items, outputs):
    return sum(o == 2 * x for x, o in zip(items, outputs)) / len(items)

FAIL_AT = {fail_at}
SIGINT_AT = {sigint_at}
"""


def _config(tmp_path: Path, fail_at: int = -1, sigint_at: int = -1, **task: object) -> Path:
    work = tmp_path / "work.py"
    work.write_text(WORK.format(fail_at=fail_at, sigint_at=sigint_at))
    keys = {
        "kind": "callable",
        "function": f"{work}:run",
        "scorer": f"{work}:score",
        "num_items": 40,
        "batch_size": 4,
        "warmup_batches": 2,
        **task,
    }
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items())
    path = tmp_path / "task.toml"
    path.write_text(f'[task]\n{body}\n\n[bench]\nsources = ["nvml"]\nperiod_us = 1000\n')
    return path


def _read(path: Path) -> pa.Table:
    with pa.OSFile(str(path)) as f:
        return pa.ipc.open_file(f).read_all()


def test_callable_task_energy_per_batch_and_item_match_truth(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    (spec,) = fake_nvml.configure([GpuSpec(waveform=Square(60.0, 250.0, 0.03, 0.5))])
    out = tmp_path / "run"
    args = ["bench", str(_config(tmp_path)), "-o", str(out), "--allow-degraded", "--idle-baseline-s", "0.1"]
    args += ["--grid-gco2-per-kwh", "400"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    s = run["summary"]
    idle_w = s["idle_power_w"]
    assert idle_w > 0 and s["net_energy_j"] == pytest.approx(s["energy_j"] - idle_w * s["duration_s"])
    assert s["carbon"]["gco2e"] == pytest.approx(s["energy_j"] / 3.6e6 * 400)
    assert s["carbon"]["gco2e_per_request"] == pytest.approx(s["carbon"]["gco2e"] / 32)  # per item
    assert (s["items"], s["batches"]) == (32, 8)  # 10 batches of 4, 2 of them warm-up
    assert s["accuracy"] == pytest.approx(24 / 32)  # x % 4 == 0 answers -1: a quarter wrong
    assert run["task"]["kind"] == "callable" and run["validity"]["verdict"] == "synthetic"
    t0, t1 = run["span_ns"]
    assert abs(s["energy_j"] - spec.energy_j(t0, t1)) <= s["energy_bound_j"]
    assert s["inferences_per_kwh"] == pytest.approx(32 / (s["energy_j"] / 3.6e6))
    assert s["accuracy_per_kwh"] == pytest.approx(s["accuracy"] / (s["energy_j"] / 3.6e6))
    batches = _read(out / "batches.arrow").to_pylist()
    assert [b["warmup"] for b in batches] == [True] * 2 + [False] * 8
    for b in batches:
        assert abs(b["energy_j"] - spec.energy_j(b["t0_ns"], b["t1_ns"])) <= b["energy_bound_j"]
    assert (batches[2]["t0_ns"], batches[-1]["t1_ns"]) == (t0, t1)
    assert s["batches_energy_j"] == pytest.approx(math.fsum(b["energy_j"] for b in batches[2:]))
    items = _read(out / "items.arrow").to_pylist()
    assert len(items) == 32 and run["attribution"]["method"] == "batch-share"
    for b in batches[2:]:
        mine = [i for i in items if i["batch"] == b["batch"]]
        assert len(mine) == 4 and all(i["send_ns"] == b["t0_ns"] and i["end_ns"] == b["t1_ns"] for i in mine)
        assert math.fsum(i["energy_j"] for i in mine) == pytest.approx(b["energy_j"])
        net = b["energy_j"] - idle_w * (b["t1_ns"] - b["t0_ns"]) * 1e-9
        assert math.fsum(i["net_energy_j"] for i in mine) == pytest.approx(net)


def test_a_failing_batch_keeps_what_was_measured(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    fake_nvml.configure([GpuSpec()])
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["bench", str(_config(tmp_path, fail_at=21)), "-o", str(out)])
    assert result.exit_code == 2, result.output  # one error (FastmeterError), after the run directory is written
    assert "boom at item 21" in result.output and "Traceback" not in result.output
    run = json.loads((out / "run.json").read_text())
    assert run["summary"]["batches"] == 3  # batches 2, 3, 4 ran; batch 5 (items 20..23) raised
    assert "boom" in run["task"]["error"]
    assert "task_error" in [r["code"] for r in run["validity"]["reasons"]]
    assert len(_read(out / "batches.arrow")) == 5


def test_task_config_errors_are_one_line(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    cases = [
        ({"kind": "callable", "function": "x:y"}, "either [task].data"),
        ({"kind": "image-classification", "model": "resnet18", "data": str(tmp_path)}, "[task].weights is required"),
        ({"kind": "callable", "num_items": 3, "function": "x:y", "image_size": 32}, "does not apply"),
        ({"kind": "callable", "num_items": 3, "function": "no_such_module_xyz:f"}, "cannot import"),
    ]
    for task, message in cases:
        cfg = tmp_path / "t.toml"
        cfg.write_text("[task]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in task.items()) + "\n")
        out = tmp_path / "never"
        result = CliRunner().invoke(main, ["bench", str(cfg), "-o", str(out)])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output and not out.exists()
    result = CliRunner().invoke(main, ["bench", str(cfg), "-o", str(out), "--rate", "3"])
    assert "does not apply to a task config" in result.output


def test_sigint_stops_after_the_batch_and_writes_the_run(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    fake_nvml.configure([GpuSpec()])
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["bench", str(_config(tmp_path, sigint_at=13)), "-o", str(out)])
    assert result.exit_code == 130, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["interrupted_by_signal"] == 2 and run["summary"]["batches"] == 2  # batches 2 and 3 (items 12..15)
    assert "interrupted" in [r["code"] for r in run["validity"]["reasons"]]
    assert len(_read(out / "items.arrow")) == 8


def test_report_and_compare_read_task_runs(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    fake_nvml.configure([GpuSpec()])
    runs = []
    for name in ("a", "b"):
        runs.append(str(tmp_path / name))
        result = CliRunner().invoke(main, ["bench", str(_config(tmp_path, num_items=16)), "-o", runs[-1]])
        assert result.exit_code == 5, result.output  # the emulator: synthetic
    report = CliRunner().invoke(main, ["report", *runs])
    assert report.exit_code == 0 and "inferences / kWh" in report.output, report.output
    compare = CliRunner().invoke(main, ["compare", *runs])  # J/item: the default for task runs without tokens
    assert "J / item (energy_per_item_j, lower is better)" in compare.output, compare.output
    other = _config(tmp_path, num_items=20)
    CliRunner().invoke(main, ["bench", str(other), "-o", str(tmp_path / "c")])
    mismatch = CliRunner().invoke(main, ["compare", runs[0], str(tmp_path / "c"), "--metric", "energy_per_item_j"])
    assert "workload.num_items: 16 vs 20" in mismatch.output, mismatch.output
