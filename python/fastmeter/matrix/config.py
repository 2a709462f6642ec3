"""Matrix configs: a bench config plus a top-level [matrix] table that names servers/models (each an [[matrix.servers]]
entry: a name, labels, and any [server] keys, a launch spec among them) x load points (concurrency or rate) x
repeats. Every cell's config is built and validated here, before anything starts (docs/launch.md, "Matrices").

    [matrix]
    repeats = 2
    seed = 1
    concurrency = [1, 8]          # or rate = [1.0, 4.0]
    cooldown_max_s = 300.0

    [[matrix.servers]]
    name = "vllm"                 # directory name of its cells
    server = "vllm"               # what `compare --vary server` calls it (default: name)
    model = "llama"               # [server].model for this entry; any other [server] key too
    launch = ["python", "-m", "vllm.entrypoints.openai.api_server", "..."]
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastmeter.errors import ConfigError
from fastmeter.load.config import BenchConfig, validate_config
from fastmeter.load.config_check import (
    MAX_CONCURRENCY,
    MAX_SEED,
    TEXT,
    Check,
    Invalid,
    integer,
    list_of,
    number,
)

MAX_REPEATS = 1000  # each repeat runs every cell again; far above what a benchmark needs
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a cell directory name, the same on every filesystem

# [matrix] keys other than `servers`: (check, default, meaning)
MATRIX_KEYS: dict[str, tuple[Check, Any, str]] = {
    "repeats": (integer(1, MAX_REPEATS), 1, "times every cell runs"),
    "seed": (integer(0, MAX_SEED), 0, "seed of the randomized interleaved order"),
    "concurrency": (list_of(integer(1, MAX_CONCURRENCY), "integers >= 1"), None, "load points by concurrency"),
    "rate": (list_of(number(0, lo_open=True, allow_inf=True), "rates"), None, "load points by request rate"),
    "cooldown_max_s": (number(0, hi=3600.0), 300.0, "longest wait for GPU power and temperature to return to idle"),
    "cooldown_min_s": (number(0, hi=3600.0), 0.0, "shortest pause between cells"),
    "baseline_s": (number(0, lo_open=True, hi=600.0), 3.0, "seconds of GPU idle readings before the first cell"),
}
ENTRY_LABELS = ("name", "server")


@dataclass(frozen=True)
class Entry:
    """One server/model of the matrix: its cell configs per load point (label -> config)."""

    name: str
    server: str  # label of the server software/build (compare --vary server)
    model: str  # label of the model (compare --vary model): [server].model
    points: dict[str, BenchConfig]


@dataclass(frozen=True)
class MatrixConfig:
    entries: tuple[Entry, ...]
    points: tuple[str, ...]  # load point labels, in the configured order
    repeats: int
    seed: int
    cooldown_max_s: float
    cooldown_min_s: float
    baseline_s: float
    base: BenchConfig  # the first cell's config: its [bench] (SLOs, sources, GPUs) is every cell's
    source: str


def is_matrix(data: Mapping[str, Any]) -> bool:
    return isinstance(data, Mapping) and "matrix" in data


def _check(source: str, where: str, check: Check, value: Any) -> Any:
    try:
        return check(value)
    except Invalid as exc:
        raise ConfigError(f"{source}: {where} {exc}") from None


def validate_matrix(data: Mapping[str, Any], source: str) -> MatrixConfig:
    """Every cell's config, checked; ConfigError naming `[matrix]...` keys otherwise."""
    raw = data["matrix"]
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: [matrix] must be a table")
    unknown = sorted(k for k in raw if k not in MATRIX_KEYS and k != "servers")
    if unknown:
        raise ConfigError(
            f"{source}: unknown key [matrix].{unknown[0]}; allowed keys: servers, {', '.join(MATRIX_KEYS)}"
        )
    opts = {k: _check(source, f"[matrix].{k}", c, raw[k]) if k in raw else d for k, (c, d, _) in MATRIX_KEYS.items()}
    if (opts["concurrency"] is None) == (opts["rate"] is None):
        raise ConfigError(f"{source}: [matrix] needs load points: set concurrency = [...] or rate = [...] (one)")
    base_data = {k: copy.deepcopy(v) for k, v in data.items() if k != "matrix"}
    bench = base_data.setdefault("bench", {})
    if isinstance(bench, dict) and (bench.get("sweep_concurrency") or bench.get("sweep_rate")):
        raise ConfigError(f"{source}: a matrix sets its load points in [matrix]; remove [bench].sweep_*")
    entries_raw = raw.get("servers")
    if not isinstance(entries_raw, list) or not entries_raw or not all(isinstance(e, Mapping) for e in entries_raw):
        raise ConfigError(
            f"{source}: [matrix] needs at least one [[matrix.servers]] entry (name = ..., and the "
            "[server] keys that differ)"
        )
    if opts["concurrency"] is not None:
        points = {f"concurrency-{c}": ("concurrency", c) for c in opts["concurrency"]}
    else:
        points = {f"rate-{r:g}": ("rate", "inf" if math.isinf(r) else r) for r in opts["rate"]}
    entries = [_entry(source, i, e, base_data, points) for i, e in enumerate(entries_raw)]
    base = next(iter(entries[0].points.values()))  # [bench] (GPUs, SLOs) and [load] are the same in every cell
    names = [e.name for e in entries]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ConfigError(f"{source}: two [[matrix.servers]] entries are named {dup!r}; names must be unique")
    return MatrixConfig(
        tuple(entries),
        tuple(points),
        opts["repeats"],
        opts["seed"],
        opts["cooldown_max_s"],
        opts["cooldown_min_s"],
        opts["baseline_s"],
        base,
        source,
    )


def _entry(
    source: str, i: int, raw: Mapping[str, Any], base_data: dict[str, Any], points: dict[str, tuple[str, Any]]
) -> Entry:
    where = f"[[matrix.servers]] entry {i + 1}"
    if "name" not in raw:
        raise ConfigError(f'{source}: {where} needs name = "..." (its cells\' directory name)')
    name = _check(source, f"{where} name", TEXT, raw["name"])
    if not _NAME.match(name):
        raise ConfigError(
            f"{source}: {where} name {name!r} must be letters, digits, '.', '_' or '-' (a directory name)"
        )
    label = _check(source, f"{where} server", TEXT, raw.get("server", name))
    server = {**base_data.get("server", {}), **{k: v for k, v in raw.items() if k not in ENTRY_LABELS}}
    cells = {}
    for label_point, (key, value) in points.items():
        cell = {**copy.deepcopy(base_data), "server": copy.deepcopy(server)}
        cell["load"] = {**cell.get("load", {}), key: value}
        cells[label_point] = validate_config(cell, f"{source}: {where} ({name}), {label_point}")
    first = next(iter(cells.values()))
    return Entry(name, label, first.server.model or "-", cells)
