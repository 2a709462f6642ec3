"""`fastmeter bench`: run a serving benchmark from a TOML config (every config key is also a flag)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from fastmeter.errors import ConfigError
from fastmeter.load.config import config_keys, read_config_file, validate_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LIST_KEYS = {("bench", "sources"), ("bench", "gpus"), ("bench", "sweep_concurrency"), ("bench", "sweep_rate"),
             ("metrics", "prefixes")}


def _flag_names() -> dict[str, tuple[str, str]]:
    """Flag -> (table, key): `--key` when the key is unique across tables, else `--table-key`."""
    keys = config_keys()
    count: dict[str, int] = {}
    for table_keys in keys.values():
        for k in table_keys:
            count[k] = count.get(k, 0) + 1
    out = {}
    for table, table_keys in keys.items():
        for k in table_keys:
            name = k if count[k] == 1 else f"{table}_{k}"
            out[name] = (table, k)
    return out


FLAGS = _flag_names()


def parse_value(text: str, is_list: bool) -> Any:
    """A flag's text as a TOML value (numbers, booleans, "inf" stay typed); bare words stay strings."""
    if is_list:
        return [parse_value(part, False) for part in text.split(",") if part]
    if text == "inf":
        return "inf"
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def merge_overrides(data: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    merged = {t: dict(v) if isinstance(v, dict) else v for t, v in data.items()}
    for flag, text in overrides.items():
        table, key = FLAGS[flag]
        value = parse_value(text, (table, key) in LIST_KEYS)
        # `--concurrency 1,2,4` / `--rate 1,5,inf` is a sweep: one point per value.
        if key in ("concurrency", "rate") and "," in text:
            table, key, value = "bench", f"sweep_{key}", parse_value(text, True)
        merged.setdefault(table, {})[key] = value
    return merged


def _options(f: Any) -> Any:
    for name, (table, key) in sorted(FLAGS.items(), reverse=True):
        f = click.option(f"--{name.replace('_', '-')}", name, default=None, metavar="VALUE",
                         help=f"[{table}].{key}")(f)
    return f


@click.command("bench")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "output_dir_flag", default=None, help="Run directory (same as --output-dir).")
@_options
def bench_command(config: str | None, output_dir_flag: str | None, **flags: str | None) -> None:
    """Benchmark an inference server while measuring energy; writes a run directory (samples.arrow,
    requests.arrow, chunks.arrow, metrics.arrow, run.json). `--concurrency 1,2,4,8` or `--rate 1,2,inf` runs a
    sweep and marks the best point within `--slo-ttft-p99-ms` / `--slo-itl-p99-ms`."""
    from fastmeter.bench.sweep import run_sweep

    data = read_config_file(config) if config else {}
    if output_dir_flag:
        flags["output_dir"] = output_dir_flag
    data = merge_overrides(data, {k: v for k, v in flags.items() if v is not None})
    cfg = validate_config(data, config or "command line")
    out = cfg.bench["output_dir"]
    if out is None:
        raise ConfigError("no run directory given: pass -o DIR (or set [bench].output_dir)")
    run_sweep(cfg, Path(out), data)
