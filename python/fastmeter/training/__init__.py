"""Training: per-step and per-epoch energy, energy-to-target, and training run directories."""

from __future__ import annotations

from fastmeter.training.run import TrainingRun
from fastmeter.training.steps import Interval, StepMeter
from fastmeter.training.target import Observation, Target, TargetResult

__all__ = ["Interval", "Observation", "StepMeter", "Target", "TargetResult", "TrainingRun"]
