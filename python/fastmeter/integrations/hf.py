"""Hugging Face Transformers: a `TrainerCallback` recording energy per optimizer step and epoch, and
energy-to-target, into a run directory.

    from fastmeter.integrations.hf import EnergyCallback
    cb = EnergyCallback("runs/bert", targets={"eval_accuracy": 0.9})
    Trainer(..., callbacks=[cb]).train()
    cb.summary["targets"][0]["energy_j"]

A step is `on_step_begin` to `on_step_end`: one optimizer step with all its gradient-accumulation batches. Every
scalar the Trainer reports to `on_evaluate` (`eval_accuracy`, `eval_loss`, ...) is observed with
`state.global_step`. Under DDP on one node, local rank 0 meters every local GPU; the others' boundaries are
gathered at the end of training (`fastmeter.integrations.ddp`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastmeter.integrations._callback import CallbackCore
from fastmeter.integrations.extras import require
from fastmeter.training.steps import StepMeter
from fastmeter.training.target import Target

transformers = require("transformers", "hf", "fastmeter.integrations.hf")


class EnergyCallback(transformers.TrainerCallback):  # type: ignore[misc, name-defined]
    """run_dir: the run directory (written by local rank 0). targets: {"eval_accuracy": 0.9} or
    {"eval_loss": (0.2, "min")}. Other keyword arguments go to `TrainingRun` (sources, period_us, force, ...)."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        targets: Mapping[str, float | tuple[float, str]] | list[Target] | None = None,
        **run_options: Any,
    ) -> None:
        self._core = CallbackCore(run_dir, targets, run_options)

    @property
    def steps(self) -> StepMeter | None:
        return self._core.steps

    @property
    def summary(self) -> dict[str, Any] | None:
        return self._core.summary

    def _steps(self, args: Any) -> StepMeter:
        return self._core.begin(args.process_index, args.local_process_index)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._steps(args)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._steps(args).begin_epoch()

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._steps(args).begin_step()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._steps(args).end_step()  # items unknown: the callback never sees the batches (the last may be short)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._steps(args).end_epoch()

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        self._core.observe_all(metrics or {}, state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._core.end(distributed=args.world_size > 1)
