"""Accuracy per unit of energy: a score for the run, from the config or from a scorer over the generated texts.

A scorer is named "module:function" (an importable module) or "path/to/file.py:function"; it is called once per
run with a list of (prompt, generated text) pairs of the successful measured requests and returns a float.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastmeter.adapters.base import RequestRecord
from fastmeter.errors import ConfigError

if TYPE_CHECKING:
    from fastmeter.load.config_types import BenchSettings

J_PER_KWH = 3.6e6

Scorer = Callable[[list[tuple[str, str]]], float]


@functools.cache
def load_scorer(spec: str, where: str = "[bench].scorer") -> Scorer:
    """The function named by "module:function" or "file.py:function"; ConfigError saying what is wrong (`where`
    names the config key it came from)."""
    module_name, sep, func_name = spec.rpartition(":")
    if not sep or not module_name or not func_name:
        raise ConfigError(f'{where} must look like "module:function" or "file.py:function", got {spec!r}')
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ConfigError(f"{where}: no file {module_name}")
            loader_spec = importlib.util.spec_from_file_location(f"_fastmeter_scorer_{path.stem}", path)
            assert loader_spec is not None and loader_spec.loader is not None
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as exc:  # the user's module failed to import: say which and why
        raise ConfigError(f"{where}: cannot import {module_name}: {type(exc).__name__}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"{where}: {module_name} has no function {func_name!r}")
    return func  # type: ignore[no-any-return]


def run_scorer(spec: str, records: Sequence[RequestRecord]) -> float:
    """Call the scorer on the (prompt, text) pairs of the ok records; the score must be a finite number >= 0."""
    pairs = [(r.prompt, r.text) for r in records if r.ok]
    score = load_scorer(spec)(pairs)
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not (math.isfinite(score) and score >= 0):
        raise ConfigError(f"[bench].scorer {spec} returned {score!r}; it must return a finite number >= 0")
    return float(score)


def accuracy_figures(accuracy: float, energy_j: float) -> dict[str, float | None]:
    """accuracy, accuracy_per_j and accuracy_per_kwh (None when no energy was measured)."""
    return {
        "accuracy": accuracy,
        "accuracy_per_j": accuracy / energy_j if energy_j > 0 else None,
        "accuracy_per_kwh": accuracy / (energy_j / J_PER_KWH) if energy_j > 0 else None,
    }


def accuracy_summary(bench: BenchSettings, records: Sequence[RequestRecord], energy_j: float) -> dict[str, Any]:
    """Summary entries for [bench].accuracy or [bench].scorer; a scorer that raises is reported, not fatal, so
    the measured run is still written (summary["accuracy_error"])."""
    if bench.accuracy is not None:
        return accuracy_figures(bench.accuracy, energy_j)
    if bench.scorer is None:
        return {}
    try:
        return {**accuracy_figures(run_scorer(bench.scorer, records), energy_j), "scorer": bench.scorer}
    except Exception as exc:  # a bug in user code must not lose the measurement
        return {"accuracy_error": f"{bench.scorer}: {type(exc).__name__}: {exc}"}
