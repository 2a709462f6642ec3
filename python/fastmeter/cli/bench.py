"""`fastmeter bench`: run a serving benchmark from a TOML config (every config key is also a flag)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from fastmeter.adapters.base import RequestRecord
from fastmeter.errors import ConfigError, FastmeterError
from fastmeter.load.config import config_keys, read_config_file, validate_config
from fastmeter.recorder import exit_code_for_signal

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


class _Progress:
    """Requests done / failed, redrawn in place on a terminal."""

    def __init__(self) -> None:
        self.done = 0
        self.failed = 0

    def __call__(self, rec: RequestRecord) -> None:
        self.done += 1
        self.failed += not rec.ok
        click.echo(f"\r  requests {self.done}  failed {self.failed} ", nl=False, err=True)


def _notify(kind: str, text: str) -> None:
    if kind == "summary":
        click.echo(text)
    elif kind == "warning":
        click.echo(f"warning: {text}", err=True)
    else:
        click.echo(text, err=True)


def _exit_status(result: dict[str, Any]) -> None:
    """SIGINT/SIGTERM: 128 + N, after everything measured is written. No successful request: one error."""
    signum = result.get("interrupted_by_signal")
    if signum is not None:
        click.echo(f"interrupted by signal {signum}: the run directory holds what was measured", err=True)
        sys.exit(exit_code_for_signal(signum))
    summaries = list(result["points"]) if "points" in result else [result["summary"]]
    empty = [s.get("point", "the run") for s in summaries if not s.get("requests_ok")]
    if empty:
        raise FastmeterError(
            f"no request succeeded in {', '.join(empty)}: see the status and error columns of requests.arrow "
            "(is the server up at base_url, and does it serve the model?)"
        )


@click.command("bench")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "output_dir_flag", default=None, help="Run directory (same as --output-dir).")
@click.option("--force", is_flag=True, help="Write into an existing non-empty run directory, replacing our files.")
@_options
def bench_command(config: str | None, output_dir_flag: str | None, force: bool, **flags: str | None) -> None:
    """Benchmark an inference server while measuring energy; writes a run directory (samples.arrow,
    requests.arrow, chunks.arrow, metrics.arrow, run.json). `--concurrency 1,2,4,8` or `--rate 1,2,inf` runs a
    sweep and marks the best point within `--slo-ttft-p99-ms` / `--slo-itl-p99-ms`. Ctrl-C/SIGTERM stop it with
    what was measured written, exit 130/143; a run where no request succeeded exits 2."""
    from fastmeter.bench.point import BenchHooks
    from fastmeter.bench.sweep import run_sweep

    data = read_config_file(config) if config else {}
    if output_dir_flag:
        flags["bench_output_dir"] = output_dir_flag
    data = merge_overrides(data, {k: v for k, v in flags.items() if v is not None})
    cfg = validate_config(data, config or "command line")
    out = cfg.bench["output_dir"]
    if out is None:
        raise ConfigError("no run directory given: pass -o DIR (or set [bench].output_dir)")
    live = sys.stderr.isatty()
    hooks = BenchHooks(notify=_notify, on_request=_Progress() if live else None)
    try:
        result = run_sweep(cfg, Path(out), data, force=force, hooks=hooks)
    finally:
        if live:
            click.echo("", err=True)
    _exit_status(result)
