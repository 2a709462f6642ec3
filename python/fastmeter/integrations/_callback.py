"""What the Lightning and Hugging Face callbacks share: which step meter this rank gets, and the end of training."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastmeter.errors import MeterStateError
from fastmeter.integrations.ddp import gather, step_meter_for
from fastmeter.training.run import TrainingRun
from fastmeter.training.steps import StepMeter
from fastmeter.training.target import Target


class CallbackCore:
    """One training's step meter, created when training starts: local rank 0 opens a `TrainingRun` (it meters
    every local GPU); the other ranks record boundaries only (`fastmeter.integrations.ddp`)."""

    def __init__(
        self,
        run_dir: str | Path,
        targets: Mapping[str, float | tuple[float, str]] | list[Target] | None,
        run_options: dict[str, Any],
    ) -> None:
        self.run_dir = Path(run_dir)
        self.targets = targets
        self.run_options = run_options
        self.steps: StepMeter | None = None
        self.summary: dict[str, Any] | None = None

    def begin(self, rank: int, local_rank: int) -> StepMeter:
        if self.summary is not None:
            raise MeterStateError(
                f"this callback already wrote its run to {self.run_dir}; give each training its own callback and "
                "run directory"
            )
        if self.steps is None:
            self.steps = step_meter_for(rank, local_rank, self.run_dir, self.targets, self.run_options)
        return self.steps

    def observe_all(self, metrics: Mapping[str, Any], step: int) -> None:
        """Every scalar metric (plain numbers or one-element tensors); others are not metrics to reach."""
        if self.steps is None:
            return
        for name, value in metrics.items():
            v = scalar(value)
            if v is not None:
                self.steps.observe(name, v, step=step)

    def end(self, distributed: bool) -> dict[str, Any] | None:
        """Gather the other ranks' boundaries (a collective when `distributed`), then write the run directory on
        the metering rank. Returns its summary there, None elsewhere."""
        steps = self.steps
        if steps is None or self.summary is not None:
            return self.summary
        if distributed:
            gather(steps)
        if isinstance(steps, TrainingRun):
            self.summary = steps.finish()
        return self.summary

    def abort(self) -> None:
        """Training raised: keep what was measured (no collective: the other ranks may be gone)."""
        if isinstance(self.steps, TrainingRun) and self.summary is None:
            self.summary = self.steps.finish()


def scalar(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    numel = getattr(value, "numel", None)
    if callable(numel) and numel() == 1:
        return float(value.item())
    return None


def batch_items(batch: Any) -> int | None:
    """Samples in a batch: the leading dimension of its first tensor (a tuple/list or dict of tensors); None when
    there is no tensor to tell."""
    first = batch
    if isinstance(batch, Mapping):
        first = next(iter(batch.values()), None)
    elif isinstance(batch, (list, tuple)):
        first = batch[0] if batch else None
    shape = getattr(first, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) > 0 else None
