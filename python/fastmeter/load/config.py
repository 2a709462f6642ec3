"""Bench configs: TOML files with [server], [workload], [load] and optional [metrics] tables.

Every key is checked against a small schema; a bad key or value raises ConfigError naming the table, the key
and what is allowed. See configs/*.toml for examples.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastmeter.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

SERVER_KINDS = ("openai", "tgi")
OPENAI_ENDPOINTS = ("completions", "chat")
WORKLOAD_KINDS = ("random", "jsonl", "mtbench", "sharegpt")

_REQUIRED = object()


def _int(lo: int) -> Callable[[str, Any], int]:
    def check(where: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"{where} must be an integer >= {lo}, got {v!r}")
        return v

    return check


def _pos_float(allow_inf: bool = False) -> Callable[[str, Any], float]:
    def check(where: str, v: Any) -> float:
        if allow_inf and v == "inf":
            return math.inf
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
            extra = ' or "inf"' if allow_inf else ""
            raise ConfigError(f"{where} must be a positive number{extra}, got {v!r}")
        return float(v)

    return check


def _choice(allowed: tuple[str, ...]) -> Callable[[str, Any], str]:
    def check(where: str, v: Any) -> str:
        if v not in allowed:
            raise ConfigError(f"{where} must be one of {', '.join(allowed)}; got {v!r}")
        return v

    return check


def _str(where: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{where} must be a non-empty string, got {v!r}")
    return v


def _bool(where: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{where} must be true or false, got {v!r}")
    return v


def _table(where: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ConfigError(f"{where} must be a table, got {v!r}")
    return v


def _str_list(where: str, v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
        raise ConfigError(f"{where} must be a list of non-empty strings, got {v!r}")
    return tuple(v)


def _list_of(item: Callable[[str, Any], Any]) -> Callable[[str, Any], tuple[Any, ...]]:
    def check(where: str, v: Any) -> tuple[Any, ...]:
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{where} must be a non-empty list, got {v!r}")
        return tuple(item(f"{where}[{i}]", x) for i, x in enumerate(v))

    return check


def _non_neg_float(where: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
        raise ConfigError(f"{where} must be a number >= 0, got {v!r}")
    return float(v)


def _pue(where: str, v: Any) -> float:
    """Power usage effectiveness: facility energy / IT energy, so never below 1."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 1 and math.isfinite(v)):
        raise ConfigError(f"{where} (power usage effectiveness) must be a number >= 1, got {v!r}")
    return float(v)


ATTRIBUTION_METHODS = ("time-share", "token-weighted")

# table -> key -> (checker, default); _REQUIRED marks keys without a default.
_SCHEMA: dict[str, dict[str, tuple[Callable[[str, Any], Any], Any]]] = {
    "server": {
        "kind": (_choice(SERVER_KINDS), _REQUIRED),
        "base_url": (_str, _REQUIRED),
        "model": (_str, None),
        "endpoint": (_choice(OPENAI_ENDPOINTS), "completions"),
        "ignore_eos": (_bool, False),
        "extra_body": (_table, None),
    },
    "workload": {
        "kind": (_choice(WORKLOAD_KINDS), _REQUIRED),
        "path": (_str, None),
        "input_tokens": (_int(1), None),
        "output_tokens": (_int(1), None),
        "max_tokens": (_int(1), None),
        "template": (_str, None),
        "shuffle": (_bool, False),
    },
    "load": {
        "concurrency": (_int(1), None),
        "rate": (_pos_float(allow_inf=True), math.inf),
        "burstiness": (_pos_float(), 1.0),
        "num_requests": (_int(1), None),
        "duration_s": (_pos_float(), None),
        "warmup_requests": (_int(0), 0),
        "timeout_s": (_pos_float(), 600.0),
        "seed": (_int(0), 0),
    },
    "bench": {
        "sources": (_str_list, ("auto",)),
        "gpus": (_str_list, ()),
        "period_us": (_int(50), 1000),
        "idle_baseline_s": (_non_neg_float, 0.0),
        "attribution": (_choice(ATTRIBUTION_METHODS), "time-share"),
        "output_dir": (_str, None),
        "sweep_concurrency": (_list_of(_int(1)), None),
        "sweep_rate": (_list_of(_pos_float(allow_inf=True)), None),
        "slo_ttft_p99_ms": (_pos_float(), None),
        "slo_itl_p99_ms": (_pos_float(), None),
        "accuracy": (_non_neg_float, None),
        "calibration": (_str, None),
        # accuracy hook, carbon and cost (see fastmeter.analysis.accuracy / .carbon)
        "scorer": (_str, None),
        "grid_gco2_per_kwh": (_non_neg_float, None),
        "pue": (_pue, 1.0),
        "price_per_kwh": (_non_neg_float, None),
        "currency": (_str, "USD"),
    },
    "metrics": {
        "enabled": (_bool, True),
        "path": (_str, "/metrics"),
        "interval_s": (_pos_float(), 1.0),
        "prefixes": (_str_list, None),
    },
}
_OPTIONAL_TABLES = ("metrics", "bench")


@dataclass(frozen=True)
class BenchConfig:
    """Validated config: one dict of checked values per table (defaults filled in)."""

    server: dict[str, Any]
    workload: dict[str, Any]
    load: dict[str, Any]
    metrics: dict[str, Any]
    bench: dict[str, Any]
    source: str = "<dict>"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw tables of a TOML bench config, unvalidated (to merge command-line overrides first)."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None


def load_config(path: str | Path) -> BenchConfig:
    """Read and validate a TOML bench config."""
    return validate_config(read_config_file(path), str(path))


def config_keys() -> dict[str, tuple[str, ...]]:
    """Every table and its keys, for generating command-line flags."""
    return {table: tuple(keys) for table, keys in _SCHEMA.items()}


def validate_config(data: dict[str, Any], source: str = "<dict>") -> BenchConfig:
    unknown = sorted(set(data) - set(_SCHEMA))
    if unknown:
        raise ConfigError(f"{source}: unknown table [{unknown[0]}]; allowed tables: {', '.join(_SCHEMA)}")
    tables = {}
    for name, schema in _SCHEMA.items():
        raw = data.get(name, {} if name in _OPTIONAL_TABLES else None)
        if raw is None:
            raise ConfigError(f"{source}: missing table [{name}]")
        tables[name] = _check_table(source, name, _table(f"{source}: [{name}]", raw), schema)
    _check_combinations(source, tables)
    return BenchConfig(
        tables["server"], tables["workload"], tables["load"], tables["metrics"], tables["bench"], source
    )


def _check_table(source: str, name: str, raw: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    for key in raw:
        if key not in schema:
            raise ConfigError(f"{source}: unknown key [{name}].{key}; allowed keys: {', '.join(schema)}")
    out = {}
    for key, (check, default) in schema.items():
        where = f"{source}: [{name}].{key}"
        if key in raw:
            out[key] = check(where, raw[key])
        elif default is _REQUIRED:
            raise ConfigError(f"{where} is required")
        else:
            out[key] = default
    return out


def _check_combinations(source: str, t: dict[str, dict[str, Any]]) -> None:
    server, workload = t["server"], t["workload"]
    if server["kind"] == "openai" and server["model"] is None:
        raise ConfigError(f'{source}: [server].model is required for kind = "openai"')
    kind = workload["kind"]
    if kind == "random":
        for key in ("input_tokens", "output_tokens"):
            if workload[key] is None:
                raise ConfigError(f'{source}: [workload].{key} is required for kind = "random"')
    elif workload["path"] is None:
        raise ConfigError(f'{source}: [workload].path is required for kind = "{kind}"')
    if kind == "mtbench" and workload["max_tokens"] is None:
        raise ConfigError(f'{source}: [workload].max_tokens is required for kind = "mtbench"')
    if t["bench"]["accuracy"] is not None and t["bench"]["scorer"] is not None:
        raise ConfigError(f"{source}: set either [bench].accuracy or [bench].scorer, not both")
