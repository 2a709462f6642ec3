"""callable: any function the user names ("module:function" or "file.py:function"), called once per batch with the
batch's items (the JSON objects of a JSONL file, or the integers 0..num_items-1), optionally scored afterwards.

    def run_batch(items: list) -> list | None       # one output per item, or None
    def score(items: list, outputs: list) -> float  # [task].scorer: the run's accuracy, a finite number >= 0

The function's own work is what each batch's window measures: it must return when that work is done (wait for
any device it used)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

from fastmeter.analysis.accuracy import load_scorer
from fastmeter.errors import ConfigError
from fastmeter.load.workloads import _jsonl
from fastmeter.tasks.base import BatchResult, Prepared, Task, TaskScore
from fastmeter.tasks.config import TaskConfig


class CallableTask(Task):
    def __init__(self, cfg: TaskConfig) -> None:
        t = cfg.task
        self.spec = t.function or ""
        self.function = load_scorer(self.spec, "[task].function")
        self.scorer = load_scorer(t.scorer, "[task].scorer") if t.scorer else None
        self.items: list[Any] = [obj for _, obj in _jsonl(t.data)] if t.data else list(range(t.num_items or 0))
        if not self.items:
            raise ConfigError(f"[task].data: {t.data} holds no items")
        self.batch_size = t.batch_size

    def batches(self) -> Iterator[Prepared]:
        for i in range(0, len(self.items), self.batch_size):
            chunk = self.items[i : i + self.batch_size]
            yield Prepared(len(chunk), chunk)

    def run(self, payload: Any) -> Any:
        out = self.function(payload)
        if out is not None and (not isinstance(out, (list, tuple)) or len(out) != len(payload)):
            raise ConfigError(
                f"[task].function {self.spec} returned {type(out).__name__}"
                f"{f' of {len(out)}' if isinstance(out, (list, tuple)) else ''} for a batch of "
                f"{len(payload)} items; return one output per item (a list), or None"
            )
        return payload, out

    def score(self, results: Sequence[BatchResult]) -> TaskScore:
        if self.scorer is None:
            return TaskScore()
        items = [x for r in results for x in r.output[0]]
        outputs = [o for r in results for o in (r.output[1] if r.output[1] is not None else [None] * r.items)]
        value = self.scorer(items, outputs)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0):
            raise ConfigError(
                f"[task].scorer {self.scorer.__name__} returned {value!r}; it must return a finite number >= 0"
            )
        return TaskScore({"accuracy": float(value)})

    def describe(self) -> dict[str, Any]:
        return {"function": self.spec, "items": len(self.items)}
