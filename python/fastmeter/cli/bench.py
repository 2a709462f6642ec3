"""`fastmeter bench`: run a serving benchmark from a TOML config (every config key is also a flag)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from fastmeter.errors import ConfigError
from fastmeter.load.config import config_keys, read_config_file, validate_config
from fastmeter.validity import Validity, Verdict, exit_code

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LIST_KEYS = {("bench", "sources"), ("bench", "gpus"), ("bench", "sweep_concurrency"), ("bench", "sweep_rate"),
             ("metrics", "prefixes")}


def _flag_names() -> dict[str, tuple[str, str]]:
    """Parameter name -> (table, key); the flag is `--table-key`, and also `--key` when no other table has it."""
    return {f"{table}_{k}": (table, k) for table, keys in config_keys().items() for k in keys}


def _unique_keys() -> set[str]:
    seen: dict[str, int] = {}
    for _, k in _flag_names().values():
        seen[k] = seen.get(k, 0) + 1
    return {k for k, n in seen.items() if n == 1}


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
    unique = _unique_keys()
    for name, (table, key) in sorted(FLAGS.items(), reverse=True):
        flags = [f"--{name.replace('_', '-')}"]
        if key in unique:
            flags.insert(0, f"--{key.replace('_', '-')}")
        f = click.option(*flags, name, default=None, metavar="VALUE", help=f"[{table}].{key}")(f)
    return f


@click.command("bench")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "output_dir_flag", default=None, help="Run directory (same as --output-dir).")
@click.option("--allow-degraded", is_flag=True,
              help="Exit 0 for a degraded run, and for a synthetic one when the synthetic source (or an emulator "
                   "through a FASTMETER_* override) was chosen; never for an invalid run.")
@_options
def bench_command(config: str | None, output_dir_flag: str | None, allow_degraded: bool, **flags: str | None) -> None:
    """Benchmark an inference server while measuring energy; writes a run directory (samples.arrow,
    requests.arrow, chunks.arrow, metrics.arrow, run.json). `--concurrency 1,2,4,8` or `--rate 1,2,inf` runs a
    sweep and marks the best point within `--slo-ttft-p99-ms` / `--slo-itl-p99-ms`.

    Exit code by the run's validity (run.json "validity"): 0 measured, 3 degraded, 4 invalid, 5 synthetic
    (see docs/methodology.md, "Validity"); 2 bad input."""
    from fastmeter.bench.sweep import run_sweep

    data = read_config_file(config) if config else {}
    if output_dir_flag:
        flags["bench_output_dir"] = output_dir_flag
    data = merge_overrides(data, {k: v for k, v in flags.items() if v is not None})
    cfg = validate_config(data, config or "command line")
    out = cfg.bench["output_dir"]
    if out is None:
        raise ConfigError("no run directory given: pass -o DIR (or set [bench].output_dir)")
    validity = Validity.from_dict(run_sweep(cfg, Path(out), data)["validity"])
    code = exit_code(validity, allow_degraded)
    click.echo(f"validity: {validity.summary()}", err=True)
    if code:
        hint = "" if validity.verdict is Verdict.INVALID else " (--allow-degraded accepts it)" if exit_code(
            validity, True) == 0 else ""
        click.echo(f"exit {code}: the run is {validity.verdict.value}, not a clean measurement{hint}", err=True)
        raise SystemExit(code)
