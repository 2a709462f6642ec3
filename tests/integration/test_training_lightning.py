"""PyTorch Lightning trains a small CNN on the digits ImageFolder to 90% validation accuracy on CPU while the
fastmeter callback meters the emulated GPU: each batch's energy and the energy-to-target agree with the emulator's
analytic truth, and the target is met at the step Lightning's own metric history says."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from fastmeter.training.read import read_training_run
from tests.emulators.nvml import FakeNvml, GpuSpec, Square
from tests.extras import need
from tests.training.digits import small_cnn

pytestmark = [
    pytest.mark.extras,
    # Lightning's advice for real jobs (more loader workers, a logger) does not apply to a 2-core CI test.
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*(log_every_n_steps|GPU available|TPU available).*:UserWarning"),
    # Lightning 2.6.6 uses a torch pytree class that torch 2.14 deprecates: theirs to update, not ours.
    pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated:FutureWarning"),
]


def test_lightning_energy_to_target(
    digits: tuple[Any, Any], cpu_only: None, fake_nvml: FakeNvml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = need("torch", "lightning")
    pl = need("pytorch_lightning", "lightning")
    need("mlflow", "mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this opt-in
    from fastmeter.integrations.lightning import EnergyCallback

    (gpu,) = fake_nvml.configure([GpuSpec(waveform=Square(120.0, 400.0, 0.017, 0.3))])
    train, val = digits

    class Classifier(pl.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = small_cnn()

        def training_step(self, batch: Any, _: int) -> Any:
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch: Any, _: int) -> None:
            x, y = batch
            self.log("val_acc", (self.net(x).argmax(1) == y).float().mean(), on_epoch=True, batch_size=len(y))

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=0.01)

    history: list[tuple[int, float, int]] = []

    class History(pl.Callback):  # type: ignore[misc, name-defined]
        """What Lightning itself reports, recorded independently of fastmeter."""

        def on_validation_end(self, trainer: Any, _: Any) -> None:
            if not trainer.sanity_checking:
                history.append((trainer.global_step, float(trainer.callback_metrics["val_acc"]), time.monotonic_ns()))

    pl.seed_everything(0, verbose=False)
    energy = EnergyCallback(tmp_path / "run", targets={"val_acc": 0.9}, sources="nvml", log_to_mlflow=True)
    mlflow_logger = pl.loggers.MLFlowLogger("digits", tracking_uri=(tmp_path / "mlruns").as_uri())
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=3, logger=mlflow_logger, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[energy, History()],
    )  # fmt: skip
    loader = torch.utils.data.DataLoader
    trainer.fit(Classifier(), loader(train, batch_size=32, shuffle=True), loader(val, batch_size=256))

    files = read_training_run(tmp_path / "run")
    steps = files.steps.to_pylist()
    assert len(steps) == trainer.global_step and sum(s["items"] for s in steps) == 3 * len(train)
    for s in steps:
        assert abs(s["energy_j"] - gpu.energy_j(s["t0_ns"], s["t1_ns"])) <= s["bound_j"]
    crossed = next((h for h in history if h[1] >= 0.9), None)
    assert crossed is not None, f"the CNN did not reach 90% (history {history}); the test needs a target it meets"
    (target,) = energy.summary["targets"]
    assert (target["step"], target["observed"]) == (crossed[0], pytest.approx(crossed[1]))
    assert target["t1_ns"] <= crossed[2]  # observed in the same validation end, just before History saw it
    truth = gpu.energy_j(target["t0_ns"], target["t1_ns"])
    assert abs(target["energy_j"] - truth) <= target["bound_j"]
    earlier = [h for h in history if h[2] < crossed[2]]
    assert all(h[1] < 0.9 for h in earlier)
    # The energy histories sit in the MLflow run Lightning logged its own metrics to.
    client = mlflow_logger.experiment
    logged = client.get_metric_history(mlflow_logger.run_id, "fastmeter.step_energy_j")
    assert sorted((m.step, m.value) for m in logged) == [(s["step"], s["energy_j"]) for s in steps]
    metrics = client.get_run(mlflow_logger.run_id).data.metrics
    assert metrics["fastmeter.energy_to_target_j.val_acc"] == target["energy_j"] and "val_acc" in metrics
