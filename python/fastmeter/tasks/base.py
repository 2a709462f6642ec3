"""What every task kind provides to the runner, and the lazy import of its heavy dependencies.

A kind splits each batch in two: `batches()` prepares it (reading and decoding data, outside the batch's energy
window) and `run(payload)` is what the window measures (moving it to the device, the model, waiting for the device).
`run` returns only what scoring needs (labels and predictions, not the images): the runner keeps every batch's
output until the end. After the last batch, `score(results)` turns the measured batches' outputs into accuracy
figures and per-item columns; a kind with per-token instants (text generation) also gives per-item events for the
attribution kernel.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from fastmeter.adapters.base import RequestRecord
from fastmeter.errors import ConfigError, FastmeterError

# The fastmeter extra that provides each heavy module (any other is installed by its own name: timm).
EXTRAS = {
    "torch": "vision",
    "torchvision": "vision",
    "pycocotools": "vision",
    "transformers": "hf",
    "accelerate": "hf",
    "PIL": "vision",
}


def need_extra(module: str, what: str) -> ModuleType:
    """Import `module`, or one ConfigError naming the extra to install (no traceback)."""
    root = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = f"pip install 'fastmeter[{EXTRAS[root]}]'" if root in EXTRAS else f"pip install {root}"
        raise ConfigError(f"{what} needs {root}, which is not installed ({exc}); {hint}") from None


class TaskFailedError(FastmeterError):
    """A batch raised (the data, the model or the user's function); raised after the run directory is written."""


@dataclass(frozen=True)
class Prepared:
    """A batch ready to run: how many items it holds and what `run` takes."""

    items: int
    payload: Any


@dataclass
class BatchResult:
    """One batch after it ran: its index, warm-up flag, instants and the kind's output (what `run` returned)."""

    index: int
    warmup: bool
    t0_ns: int
    t1_ns: int
    items: int
    output: Any


@dataclass
class TaskScore:
    """What a kind says about its measured batches: summary figures (accuracy is the headline figure when the kind
    has one) and per-item columns aligned with the items of the measured batches, in order."""

    figures: dict[str, float | int | str | None] = field(default_factory=dict)
    item_columns: dict[str, list[Any]] = field(default_factory=dict)


class Task(ABC):
    """One kind of in-process task, built from a validated TaskConfig (models and data loaded in the constructor,
    before any measurement starts: an unusable input fails there, before a run directory exists)."""

    @abstractmethod
    def batches(self) -> Iterator[Prepared]:
        """The data set, batch by batch (warm-up batches first: the runner counts them)."""

    @abstractmethod
    def run(self, payload: Any) -> Any:
        """Run one batch and return when the device is done with it: what scoring needs of it, kept small."""

    @abstractmethod
    def score(self, results: Sequence[BatchResult]) -> TaskScore:
        """Accuracy figures and per-item columns of the measured batches."""

    def item_events(self, results: Sequence[BatchResult]) -> list[RequestRecord] | None:
        """Per-item instants (send, first token, tokens, end) of the measured batches' items, in order, for the
        attribution kernel; None: items share their batch's energy equally."""
        return None

    def describe(self) -> dict[str, Any]:
        """What run.json records about the task as it ran (model, library versions, data set size)."""
        return {}
