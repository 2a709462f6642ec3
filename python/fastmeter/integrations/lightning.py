"""PyTorch Lightning: energy per training batch and epoch, and energy-to-target, into a run directory.

    from fastmeter.integrations.lightning import EnergyCallback
    cb = EnergyCallback("runs/cnn", targets={"val_acc": 0.9}, sources="auto")
    Trainer(callbacks=[cb]).fit(model, train, val)
    cb.summary["targets"][0]["energy_j"]

A step is one training batch (`on_train_batch_start` to `on_train_batch_end`, so the optimizer step is inside;
with `accumulate_grad_batches` > 1 the rows of steps.arrow are batches while `global_step` counts optimizer steps);
every scalar in `trainer.callback_metrics` is observed at the end of each validation run (not the sanity check) with
`trainer.global_step`. With `log_to_mlflow=True` the run directory is logged at the end of fit
(`fastmeter.integrations.mlflow.log_training_run`) into the trainer's `MLFlowLogger` run, next to the metrics
Lightning logs there, or else into the active MLflow run. Under DDP on one node, local rank 0 meters every local
GPU and the other ranks' boundaries are gathered at the end of fit (`fastmeter.integrations.ddp`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastmeter.integrations._callback import CallbackCore, batch_items
from fastmeter.integrations.extras import require
from fastmeter.training.steps import StepMeter
from fastmeter.training.target import Target

pl = require("pytorch_lightning", "lightning", "fastmeter.integrations.lightning")


class EnergyCallback(pl.Callback):  # type: ignore[misc, name-defined]
    """run_dir: the run directory (written by local rank 0). targets: {"val_acc": 0.9} or
    {"val_loss": (0.2, "min")}. log_to_mlflow: also log the run directory to MLflow at the end of fit (needs
    `fastmeter[mlflow]`). Other keyword arguments go to `TrainingRun` (sources, period_us, force, ...)."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        targets: Mapping[str, float | tuple[float, str]] | list[Target] | None = None,
        log_to_mlflow: bool = False,
        **run_options: Any,
    ) -> None:
        self._core = CallbackCore(run_dir, targets, run_options)
        self._log_to_mlflow = log_to_mlflow

    @property
    def steps(self) -> StepMeter | None:
        """This rank's step meter (a `TrainingRun` on local rank 0), once fit has started."""
        return self._core.steps

    @property
    def summary(self) -> dict[str, Any] | None:
        """The run's summary (training.json) on the metering rank, once fit has ended."""
        return self._core.summary

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._core.begin(trainer.global_rank, trainer.local_rank)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._core.begin(trainer.global_rank, trainer.local_rank).begin_epoch()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._core.begin(trainer.global_rank, trainer.local_rank).begin_step()

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._core.begin(trainer.global_rank, trainer.local_rank).end_step(batch_items(batch))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._core.begin(trainer.global_rank, trainer.local_rank).end_epoch()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self._core.observe_all(trainer.callback_metrics, trainer.global_step)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        summary = self._core.end(distributed=trainer.world_size > 1)
        if summary is not None and self._log_to_mlflow:
            from fastmeter.integrations.mlflow import log_training_run

            logger = next((lg for lg in trainer.loggers if type(lg).__name__ == "MLFlowLogger"), None)
            if logger is None:
                log_training_run(self._core.run_dir)
            else:
                log_training_run(self._core.run_dir, run_id=logger.run_id, client=logger.experiment)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._core.abort()
