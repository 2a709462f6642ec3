"""The Hugging Face Trainer trains a small CNN on the digits to 90% eval accuracy on CPU with fastmeter's
TrainerCallback: energy-to-target is the emulator's analytic energy up to the evaluation whose accuracy first met
the target, at the step the Trainer's own log history gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fastmeter.training.read import read_training_run
from tests.emulators.nvml import FakeNvml, GpuSpec, Square
from tests.extras import need
from tests.training.digits import small_cnn

pytestmark = pytest.mark.extras


def test_hf_trainer_energy_to_target(
    digits: tuple[Any, Any], cpu_only: None, fake_nvml: FakeNvml, tmp_path: Path
) -> None:
    torch = need("torch", "hf")
    transformers = need("transformers", "hf")
    from fastmeter.integrations.hf import EnergyCallback

    (gpu,) = fake_nvml.configure([GpuSpec(waveform=Square(150.0, 350.0, 0.023, 0.6))])
    train, val = digits

    class Pairs(torch.utils.data.Dataset):  # type: ignore[misc, name-defined]
        def __init__(self, data: Any) -> None:
            self.data = data

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, i: int) -> dict[str, Any]:
            x, y = self.data[i]
            return {"pixel_values": x, "labels": y}

    class Model(torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = small_cnn()

        def forward(self, pixel_values: Any, labels: Any = None) -> dict[str, Any]:
            logits = self.net(pixel_values)
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    def accuracy(pred: Any) -> dict[str, float]:
        return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), num_train_epochs=3, per_device_train_batch_size=32,
        per_device_eval_batch_size=256, learning_rate=0.01, lr_scheduler_type="constant", eval_strategy="epoch",
        save_strategy="no", logging_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
        dataloader_num_workers=0,
    )  # fmt: skip
    energy = EnergyCallback(tmp_path / "run", targets={"eval_accuracy": 0.9}, sources="nvml")
    trainer = transformers.Trainer(
        model=Model(), args=args, train_dataset=Pairs(train), eval_dataset=Pairs(val), compute_metrics=accuracy,
        callbacks=[energy],
    )  # fmt: skip
    trainer.train()

    files = read_training_run(tmp_path / "run")
    steps = files.steps.to_pylist()
    assert len(steps) == trainer.state.global_step and len(files.epochs) == 3
    for row in steps + files.epochs.to_pylist():
        assert abs(row["energy_j"] - gpu.energy_j(row["t0_ns"], row["t1_ns"])) <= row["bound_j"]
    evals = [h for h in trainer.state.log_history if "eval_accuracy" in h]
    crossed = next((h for h in evals if h["eval_accuracy"] >= 0.9), None)
    assert crossed is not None, f"the CNN did not reach 90% ({evals}); the test needs a target it meets"
    (target,) = energy.summary["targets"]
    assert (target["step"], target["observed"]) == (crossed["step"], pytest.approx(crossed["eval_accuracy"]))
    assert abs(target["energy_j"] - gpu.energy_j(target["t0_ns"], target["t1_ns"])) <= target["bound_j"]
