"""Read a training run directory (`TrainingRun`, the Lightning and HF callbacks) with every file checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from fastmeter.errors import FastmeterError
from fastmeter.io.rundir import read_json
from fastmeter.training.run import TRAINING_JSON
from fastmeter.training.tables import EPOCHS_SCHEMA, OBSERVATIONS_SCHEMA, STEPS_SCHEMA, read_table


@dataclass
class TrainingFiles:
    summary: dict[str, Any]  # training.json
    steps: pa.Table
    epochs: pa.Table
    observations: pa.Table


def read_training_run(path: str | Path) -> TrainingFiles:
    p = Path(path)
    if not (p / TRAINING_JSON).is_file():
        raise FastmeterError(
            f"{p} has no {TRAINING_JSON}: pass a run directory written by fastmeter.training (TrainingRun or the "
            "Lightning/Hugging Face callbacks)"
        )
    summary = read_json(p / TRAINING_JSON)
    for key in ("span_ns", "realtime_anchor", "energy_by_channel_j", "targets"):
        if key not in summary:
            raise FastmeterError(f"{p / TRAINING_JSON} lacks {key!r}; it was not written by fastmeter.training")
    return TrainingFiles(
        summary,
        read_table(p / "steps.arrow", STEPS_SCHEMA),
        read_table(p / "epochs.arrow", EPOCHS_SCHEMA),
        read_table(p / "observations.arrow", OBSERVATIONS_SCHEMA),
    )
