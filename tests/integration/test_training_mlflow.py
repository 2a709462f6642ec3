"""A training run logged to MLflow with a local file store, read back through MlflowClient: per-step and
per-epoch energy histories equal the run directory's rows (and so the emulator's truth), energy-to-target is a
metric, the verdict a tag, and the run directory an artifact."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fastmeter.errors import ConfigError
from fastmeter.training import TrainingRun
from fastmeter.training.read import read_training_run
from tests.emulators.nvml import FakeNvml, GpuSpec, Square
from tests.extras import need

pytestmark = pytest.mark.extras


def test_mlflow_reads_back_what_was_logged(
    fake_nvml: FakeNvml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = need("mlflow", "mlflow")
    from fastmeter.integrations.mlflow import log_training_run

    (gpu,) = fake_nvml.configure([GpuSpec(waveform=Square(100.0, 300.0, 0.013, 0.4))])
    with TrainingRun(tmp_path / "run", "nvml", targets={"acc": 0.8}) as run:
        for acc in (0.6, 0.85):
            with run.epoch():
                for _ in range(3):
                    with run.step(items=16):
                        time.sleep(0.005)
            run.observe("acc", acc)
    files = read_training_run(tmp_path / "run")

    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this opt-in
    with pytest.raises(ConfigError, match="no active MLflow run"):
        log_training_run(tmp_path / "run")
    with mlflow.start_run() as active:
        run_id = log_training_run(tmp_path / "run")
    assert run_id == active.info.run_id

    client = mlflow.tracking.MlflowClient()
    history = sorted(client.get_metric_history(run_id, "fastmeter.step_energy_j"), key=lambda m: m.step)
    steps = files.steps.to_pylist()
    assert [(m.step, m.value) for m in history] == [(s["step"], s["energy_j"]) for s in steps]
    for s in steps:
        assert abs(s["energy_j"] - gpu.energy_j(s["t0_ns"], s["t1_ns"])) <= s["bound_j"]
    epochs = client.get_metric_history(run_id, "fastmeter.epoch_energy_j")
    assert sorted((m.step, m.value) for m in epochs) == [(e["epoch"], e["energy_j"]) for e in files.epochs.to_pylist()]
    logged = client.get_run(run_id).data
    (target,) = run.summary["targets"]
    assert logged.metrics["fastmeter.energy_to_target_j.acc"] == target["energy_j"]
    assert logged.metrics["fastmeter.target_step.acc"] == target["step"] == 6
    assert abs(target["energy_j"] - gpu.energy_j(target["t0_ns"], target["t1_ns"])) <= target["bound_j"]
    assert logged.tags["fastmeter.validity"] == "synthetic" and logged.tags["fastmeter.unknown_steps"] == "0"
    artifacts = {a.path for a in client.list_artifacts(run_id, "fastmeter")}
    assert {"fastmeter/training.json", "fastmeter/steps.arrow", "fastmeter/samples.arrow"} <= artifacts
