"""Bench configs: TOML files with [server], [workload], [load] and optional [bench] and [metrics] tables.

This is the edge: TOML text and command-line flags become one frozen BenchConfig here (see config_types), every
value checked once; past it nothing reads a dict by key. A bad value raises ConfigError naming where it came from
(the file and `[table].key`, or the flag) and what is allowed. See configs/*.toml for examples.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fastmeter.errors import ConfigError
from fastmeter.load.config_check import Invalid
from fastmeter.load.config_types import (
    ATTRIBUTION_METHODS,
    OPENAI_ENDPOINTS,
    OPTIONAL_TABLES,
    SERVER_KINDS,
    TABLES,
    WORKLOAD_KINDS,
    BenchConfig,
    BenchSettings,
    LoadConfig,
    MetricsConfig,
    Option,
    ServerConfig,
    WorkloadConfig,
    option_of,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

__all__ = [
    "ATTRIBUTION_METHODS", "OPENAI_ENDPOINTS", "SERVER_KINDS", "WORKLOAD_KINDS", "BenchConfig", "BenchSettings",
    "LoadConfig", "MetricsConfig", "ServerConfig", "WorkloadConfig", "config_fields", "config_to_dict",
    "load_config", "read_config_file", "validate_config",
]

# (table, key) -> the flag a value came from, so its error names the flag instead of the file.
Origins = Mapping[tuple[str, str], str]


def read_text_file(path: str | Path, what: str) -> str:
    """A UTF-8 text file's content, or ConfigError naming the file (and the line of a byte that is not UTF-8)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{what} {path}:{line}: not UTF-8 text (byte {data[exc.start]:#04x} at offset "
                          f"{exc.start}); save it as UTF-8") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw tables of a TOML bench config, unvalidated (to merge command-line overrides first)."""
    text = read_text_file(path, "config")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"config {path} nests arrays or tables too deeply to read") from None


def load_config(path: str | Path) -> BenchConfig:
    """Read and validate a TOML bench config."""
    return validate_config(read_config_file(path), str(path))


def config_fields() -> list[tuple[str, dataclasses.Field[Any], Option]]:
    """Every (table, field, option) of the config, for generating command-line flags and their help."""
    return [(table, f, option_of(f)) for table, cls in TABLES.items() for f in dataclasses.fields(cls)]


def _where(source: str, origins: Origins, table: str, key: str) -> str:
    return origins.get((table, key)) or f"{source}: [{table}].{key}"


def validate_config(data: Mapping[str, Any], source: str = "<dict>", origins: Origins | None = None) -> BenchConfig:
    """Check every table and key of `data` (TOML tables as dicts) and build the typed config."""
    origins = origins or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a config is a set of tables ([server], [workload], [load]); got {data!r}")
    unknown = sorted(str(k) for k in data if k not in TABLES)
    if unknown:
        raise ConfigError(f"{source}: unknown table [{unknown[0]}]; allowed tables: {', '.join(TABLES)}")
    tables: dict[str, Any] = {}
    for name, cls in TABLES.items():
        raw = data.get(name, {} if name in OPTIONAL_TABLES else None)
        if raw is None:
            raise ConfigError(f"{source}: missing table [{name}]")
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: [{name}] must be a table of keys, got {raw!r}")
        tables[name] = _build_table(source, origins, name, cls, raw)
    cfg = BenchConfig(tables["server"], tables["workload"], tables["load"], tables["metrics"], tables["bench"],
                      source, cluster=tables["cluster"])
    problem = _combination_problem(cfg, lambda t, k: origins.get((t, k)) or f"[{t}].{k}")
    if problem:
        raise ConfigError(f"{source}: {problem}")
    return cfg


def _build_table(source: str, origins: Origins, name: str, cls: type, raw: Mapping[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(f"{source}: unknown key [{name}].{key}; allowed keys: {', '.join(fields)}")
    values = {}
    for key, f in fields.items():
        where = _where(source, origins, name, key)
        value = raw.get(key)
        if value is None:  # absent (None also marks an unset key in a dumped config)
            if f.default is dataclasses.MISSING:
                raise ConfigError(f"{where} is required")
            continue
        try:
            values[key] = option_of(f).check(value)
        except Invalid as exc:
            raise ConfigError(f"{where} {exc}") from None
    return cls(**values)


def _combination_problem(cfg: BenchConfig, name: Callable[[str, str], str]) -> str | None:
    """What is wrong with how the values go together (each value alone is fine), naming keys or flags."""
    server, workload = cfg.server, cfg.workload
    if server.kind == "openai" and server.model is None:
        return f'{name("server", "model")} is required for kind = "openai"'
    kind = workload.kind
    if kind == "random":
        for key in ("input_tokens", "output_tokens"):
            if getattr(workload, key) is None:
                return f'{name("workload", key)} is required for kind = "random"'
    elif workload.path is None:
        return f'{name("workload", "path")} is required for kind = "{kind}"'
    if kind == "mtbench" and workload.max_tokens is None:
        return f'{name("workload", "max_tokens")} is required for kind = "mtbench"'
    if cfg.bench.accuracy is not None and cfg.bench.scorer is not None:
        return f"set either {name('bench', 'accuracy')} or {name('bench', 'scorer')}, not both"
    if cfg.bench.gpus and "auto" not in cfg.bench.sources and "nvml" not in cfg.bench.sources:
        return f"{name('bench', 'gpus')} selects NVIDIA GPUs, but {name('bench', 'sources')} does not include nvml"
    if cfg.load.client == "native" and not server.base_url.startswith("http://"):
        return (f'{name("load", "client")} = "native" speaks plain http:// only; for {server.base_url} use '
                '"asyncio" or "auto" (which picks asyncio for https://)')
    return None


def _plain(v: Any) -> Any:
    if isinstance(v, float) and math.isinf(v):
        return "inf"  # as the TOML files spell it, so the dump validates again
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def config_to_dict(cfg: BenchConfig) -> dict[str, Any]:
    """The config as plain JSON-able tables (what run.json records): every key with its value, unset ones as
    None; `validate_config` reads it back to an equal config."""
    return {table: _plain(dataclasses.asdict(getattr(cfg, table))) for table in TABLES}
