"""Per-step and per-epoch energy and energy-to-target on the NVML emulator: every interval's energy agrees with the
analytic truth inside its error bound, the target is found at the first observation that meets it, and the run
directory reads back (training files, and samples.arrow through `fastmeter show`)."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import fastmeter
from fastmeter.cli import main
from fastmeter.errors import ConfigError, FastmeterError, MeterStateError
from fastmeter.integrations.extras import MissingExtraError, require
from fastmeter.training import StepMeter, Target, TrainingRun
from fastmeter.training.read import read_training_run
from fastmeter.validity import Verdict
from tests.emulators.nvml import FakeNvml, GpuSpec, Square


def _work(seconds: float) -> None:
    time.sleep(seconds)  # the emulator's power follows its clock, not our CPU: sleeping is work here


def _train(run: StepMeter, accuracies: list[float], steps_per_epoch: int = 3) -> None:
    for acc in accuracies:
        with run.epoch():
            for _ in range(steps_per_epoch):
                with run.step(items=32):
                    _work(0.007)
        _work(0.004)  # evaluation: outside any step, inside energy-to-target
        run.observe("val_acc", acc)


def test_steps_epochs_and_target_match_the_analytic_truth(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    (gpu,) = fake_nvml.configure([GpuSpec(waveform=Square(100.0, 300.0, 0.013, 0.4))])
    with TrainingRun(tmp_path / "run", "nvml", targets={"val_acc": 0.9}) as run:
        _train(run, [0.5, 0.93, 0.8, 0.97])
    summary = run.summary
    files = read_training_run(tmp_path / "run")
    steps, epochs = files.steps.to_pylist(), files.epochs.to_pylist()
    assert [s["step"] for s in steps] == list(range(12)) and [s["epoch"] for s in steps] == [i // 3 for i in range(12)]
    assert [e["steps"] for e in epochs] == [3, 3, 3, 3] and [e["items"] for e in epochs] == [96, 96, 96, 96]
    for row in steps + epochs:
        truth = gpu.energy_j(row["t0_ns"], row["t1_ns"])
        assert abs(row["energy_j"] - truth) <= row["bound_j"], row
        assert dict(row["energy_by_channel_j"]) == {"gpu0": row["energy_j"]}  # one GPU: its share is the total
        # A step's verdict is its span's (the run's verdict, in the summary, adds that the source is an emulator).
        assert row["verdict"] in ("measured", "degraded") and set(row["reason_codes"]) <= {"bound_above_limit"}
    # Epoch energy is the span of the epoch, which contains its steps: at least their sum, less the bounds.
    for e in epochs:
        inside = [s for s in steps if s["epoch"] == e["epoch"]]
        slack = e["bound_j"] + math.fsum(s["bound_j"] for s in inside)
        assert e["energy_j"] >= math.fsum(s["energy_j"] for s in inside) - slack

    (target,) = summary["targets"]
    obs = files.observations.to_pylist()
    first = next(o for o in obs if o["value"] >= 0.9)
    assert target["reached"] and target["observed"] == first["value"] == 0.93
    assert (target["step"], target["epoch"], target["t1_ns"]) == (6, 1, first["t_ns"])
    assert target["t0_ns"] == summary["span_ns"][0]
    truth = gpu.energy_j(target["t0_ns"], target["t1_ns"])
    assert abs(target["energy_j"] - truth) <= target["bound_j"]
    # Reaching the target took the first two epochs (inside its span) and not the last two (disjoint from it, and
    # all inside the run): containment, whatever the timing.
    e0, e1, e2, e3 = epochs
    assert target["energy_j"] >= e0["energy_j"] + e1["energy_j"] - target["bound_j"] - e0["bound_j"] - e1["bound_j"]
    rest_j = e2["energy_j"] + e3["energy_j"] - e2["bound_j"] - e3["bound_j"]
    assert target["energy_j"] - target["bound_j"] + rest_j <= summary["energy_j"] + summary["energy_bound_j"]

    assert summary["steps"] == 12 and summary["items"] == 12 * 32
    assert summary["energy_per_item_j"] == pytest.approx(summary["steps_energy_j"] / (12 * 32))
    whole = gpu.energy_j(*summary["span_ns"])
    assert abs(summary["energy_j"] - whole) <= summary["energy_bound_j"]
    assert summary["validity"]["verdict"] == "synthetic"

    shown = CliRunner().invoke(main, ["show", str(tmp_path / "run" / "samples.arrow")])
    assert shown.exit_code == 0, shown.output
    assert "gpu0" in shown.output and "SYNTHETIC" in shown.output


def test_a_target_never_reached_is_unknown_with_a_reason(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    fake_nvml.configure([GpuSpec(waveform=Square(100.0, 300.0, 0.013, 0.4))])
    with TrainingRun(tmp_path / "run", "nvml", targets={"val_loss": (0.1, "min")}) as run:
        for loss in (0.9, 0.5, float("nan")):
            with run.step():
                _work(0.003)
            run.observe("val_loss", loss)
    result = run.energy_to_target()
    assert not result.reached and math.isnan(result.energy_j) and result.step is None
    assert result.validity.verdict is Verdict.INVALID
    assert [r.code for r in result.validity.reasons] == ["target_not_reached"]
    assert "3 observations of 'val_loss'" in result.validity.reasons[0].message
    (saved,) = run.summary["targets"]
    assert saved["energy_j"] is None or math.isnan(saved["energy_j"])


def test_min_mode_targets_are_reached_at_or_below(fake_nvml: FakeNvml) -> None:
    (gpu,) = fake_nvml.configure([GpuSpec(waveform=Square(50.0, 250.0, 0.011, 0.5))])
    with fastmeter.Meter("nvml", 1000) as m:
        steps = StepMeter(m, targets=[Target("loss", 0.25, "min")])
        for loss in (1.0, 0.25, 0.1):
            with steps.step():
                _work(0.004)
            steps.observe("loss", loss)
        result = steps.energy_to_target("loss")
        assert result.reached and result.observed == 0.25 and result.step == 2
        assert abs(result.energy_j - gpu.energy_j(result.t0_ns, result.t1_ns)) <= result.bound_j


def test_an_exception_inside_a_step_keeps_what_was_measured(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    (gpu,) = fake_nvml.configure([GpuSpec(waveform=Square(100.0, 300.0, 0.013, 0.4))])
    with pytest.raises(RuntimeError, match="diverged"):
        with TrainingRun(tmp_path / "run", "nvml") as run:
            with run.epoch():
                with run.step():
                    _work(0.003)
                with run.step():
                    raise RuntimeError("diverged")
    (e,) = read_training_run(tmp_path / "run").epochs.to_pylist()
    assert e["items"] is None  # its steps did not say: unknown, not 0
    assert e["steps"] == 2 and abs(e["energy_j"] - gpu.energy_j(e["t0_ns"], e["t1_ns"])) <= e["bound_j"]


def test_bad_use_is_one_clear_error(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="finite number"):
        StepMeter(None, targets={"acc": float("nan")})
    with pytest.raises(ConfigError, match="not one of max, min"):
        Target("acc", 0.9, "up")
    steps = StepMeter(None)
    with pytest.raises(MeterStateError, match="no step is open"):
        steps.end_step()
    steps.begin_step()
    with pytest.raises(MeterStateError, match="still open"):
        steps.begin_step()
    with pytest.raises(ConfigError, match="must be a number"):
        steps.observe("acc", "high")
    with pytest.raises(ConfigError, match="whole number"):
        steps.end_step(items=-1)
    with pytest.raises(ConfigError, match="needs a name"):
        steps.observe("", 0.5)
    with pytest.raises(ConfigError, match="no target was set"):
        steps.energy_to_target()
    with pytest.raises(MeterStateError, match="local rank 0 meters it"):
        StepMeter(None, targets={"acc": 0.9}).energy_to_target()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="--force"):
        TrainingRun(tmp_path / "used", "nvml")
    with pytest.raises(FastmeterError, match="no training.json"):
        read_training_run(tmp_path / "used")


def test_a_missing_extra_names_it() -> None:
    with pytest.raises(MissingExtraError, match=r"pip install 'fastmeter\[mlflow\]'"):
        require("fastmeter_no_such_module", "mlflow", "logging to MLflow")


def test_a_step_before_the_meter_started_is_unknown_not_lost(fake_nvml: FakeNvml) -> None:
    fake_nvml.configure([GpuSpec(waveform=Square(100.0, 300.0, 0.013, 0.4))])
    m = fastmeter.Meter("nvml", 1000)
    steps = StepMeter(m)
    with steps.step():
        _work(0.002)
    with m:
        with steps.step():
            _work(0.003)
        early, late = steps.intervals()[0]
    assert math.isnan(early.energy_j) and early.validity is not None
    assert [r.code for r in early.validity.reasons] == ["outside_record"]
    assert late.energy_j > 0 and late.validity is not None and late.validity.verdict is not Verdict.INVALID


def test_ddp_ranks_come_from_torchrun_and_one_node_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastmeter.integrations.ddp import node_ranks

    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert node_ranks() == (0, 0, 1)  # no process group: a single process
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert node_ranks() == (3, 1, 4)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="several nodes"):
        node_ranks()
    monkeypatch.setenv("RANK", "three")
    with pytest.raises(ConfigError, match="RANK='three' is not an integer"):
        node_ranks()


def test_show_points_a_training_directory_at_its_trace(tmp_path: Path) -> None:
    with TrainingRun(tmp_path / "run", "synthetic") as run:
        with run.step():
            _work(0.002)
    r = CliRunner().invoke(main, ["show", str(tmp_path / "run")])
    assert r.exit_code == 2 and "training run directory" in r.output and "samples.arrow" in r.output


def test_each_integration_names_its_extra_when_the_framework_is_missing(tmp_path: Path) -> None:
    # A None entry in sys.modules makes `import x` fail as if x were not installed, whatever this venv has.
    script = """
import sys
for name in ("pytorch_lightning", "transformers", "mlflow"):
    sys.modules[name] = None
from fastmeter.integrations.extras import MissingExtraError
for module in ("fastmeter.integrations.lightning", "fastmeter.integrations.hf"):
    try:
        __import__(module)
    except MissingExtraError as e:
        print(e)
from fastmeter.integrations.mlflow import log_training_run
try:
    log_training_run(sys.argv[1])
except MissingExtraError as e:
    print(e)
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stdout
    for line, extra in zip(lines, ("lightning", "hf", "mlflow")):
        assert f"pip install 'fastmeter[{extra}]'" in line


def test_a_framework_callback_records_one_training(tmp_path: Path) -> None:
    from fastmeter.integrations._callback import CallbackCore

    core = CallbackCore(tmp_path / "run", {"acc": 0.5}, {"sources": "synthetic"})
    steps = core.begin(rank=0, local_rank=0)
    assert isinstance(steps, TrainingRun) and core.begin(0, 0) is steps  # every hook gets the same one
    with steps.step():
        _work(0.002)
    core.observe_all({"acc": 0.75, "name": "not a number", "flag": True}, step=1)
    assert [(o.metric, o.value) for o in steps.observations] == [("acc", 0.75)]
    summary = core.end(distributed=False)
    assert summary is not None and summary["targets"][0]["reached"] and core.end(distributed=False) is summary
    with pytest.raises(MeterStateError, match="already wrote its run"):
        core.begin(0, 0)
    other = CallbackCore(tmp_path / "other", None, {"sources": "synthetic"}).begin(rank=1, local_rank=1)
    assert other.meter is None and not (tmp_path / "other").exists()  # only local rank 0 meters and writes
