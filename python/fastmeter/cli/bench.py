"""`fastmeter bench`: run a serving benchmark from a TOML config; every config key is also a flag, and the flags
and their help are generated from the typed config (fastmeter.load.config_types)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from fastmeter.adapters.base import RequestRecord
from fastmeter.errors import ConfigError, FastmeterError
from fastmeter.load import workloads
from fastmeter.load.config import BenchConfig, config_fields, read_config_file, validate_config
from fastmeter.load.config_check import Check, Choice, ListOf, Text, Url
from fastmeter.load.config_types import Option
from fastmeter.recorder import exit_code_for_signal
from fastmeter.validity import Validity, Verdict, exit_code

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# Tables whose keys always keep the table in their flag name: `--metrics-path` says more than `--path`.
_QUALIFIED_TABLES = ("metrics",)


@dataclasses.dataclass(frozen=True)
class Flag:
    table: str
    key: str
    option: Option
    default: Any
    names: tuple[str, ...]  # the first is the one help shows; the rest are accepted aliases

    @property
    def param(self) -> str:
        return f"{self.table}_{self.key}"


def _flags() -> list[Flag]:
    fields = config_fields()
    counts: dict[str, int] = {}
    for _, f, _ in fields:
        counts[f.name] = counts.get(f.name, 0) + 1
    out = []
    for table, f, option in fields:
        key_flag, table_flag = f"--{f.name.replace('_', '-')}", f"--{table}-{f.name.replace('_', '-')}"
        short = counts[f.name] == 1 and table not in _QUALIFIED_TABLES
        names = (key_flag, table_flag) if short else (table_flag,)
        if (table, f.name) == ("bench", "output_dir"):
            names = ("-o", *names)
        out.append(Flag(table, f.name, option, f.default, names))
    return sorted(out, key=lambda fl: fl.option.rank)


FLAGS = _flags()
_BY_PARAM = {fl.param: fl for fl in FLAGS}


def _default_text(v: Any) -> str:
    if v is dataclasses.MISSING:
        return "required"
    if v is None:
        return "unset"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, tuple):
        return ",".join(map(str, v)) or "all"
    return f"{v:g}" if isinstance(v, float) else str(v)


def help_line(fl: Flag) -> str:
    """One line of meaning, then the allowed values, the default and the TOML key it overrides."""
    c = fl.option.check
    return (f"{fl.option.help} [{c.allowed}; default: {_default_text(fl.default)}; "
            f"TOML [{fl.table}].{fl.key}]")


class _ConfigOption(click.Option):
    """Shows only the first flag name in help, or `-o, --output-dir` (the others are aliases kept for scripts)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        record = super().get_help_record(ctx)
        if record is None:
            return None
        names = ", ".join(self.opts[:2]) if self.opts[0] == "-o" else self.opts[0]
        return f"{names} {self.metavar}", record[1]


def parse_value(text: str, check: Check) -> Any:
    """A flag's text as the value its config key takes: text stays text for text keys (a model named "7"), a list
    is comma-separated, anything else is read as a TOML value (numbers, booleans, inf and nan stay typed for the
    check to judge); a bare word the check will refuse stays as typed."""
    if isinstance(check, ListOf):
        return [parse_value(part.strip(), check.item) for part in text.split(",") if part.strip()]
    if isinstance(check, (Text, Choice, Url)):
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


def merge_overrides(data: dict[str, Any], overrides: dict[str, tuple[str, str]]
                    ) -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
    """`data` with flag values (param -> (flag as typed, text)) merged in, and which (table, key) came from which
    flag (so an error names the flag)."""
    merged = {t: dict(v) if isinstance(v, dict) else v for t, v in data.items()}
    origins: dict[tuple[str, str], str] = {}
    for param, (flag, text) in overrides.items():
        fl = _BY_PARAM[param]
        table, key = fl.table, fl.key
        value = parse_value(text, fl.option.check)
        # `--concurrency 1,2,4` / `--rate 1,5,inf` is a sweep: one point per value.
        if key in ("concurrency", "rate") and "," in text:
            table, key = "bench", f"sweep_{key}"
            value = parse_value(text, ListOf("LIST", "", fl.option.check))
        target = merged.setdefault(table, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{flag}: the config's [{table}] is not a table")
        target[key] = value
        origins[(table, key)] = flag
    return merged, origins


def _options(f: Any) -> Any:
    for fl in reversed(FLAGS):  # click lists options in the order they were declared: most used first
        f = click.option(*fl.names, fl.param, cls=_ConfigOption, default=None, metavar=fl.option.check.metavar,
                         help=help_line(fl))(f)
    return f


class _Progress:
    """Measured requests done / failed (warm-up ones counted apart, as the summary does), redrawn in place on a
    terminal."""

    def __init__(self) -> None:
        self.warmup = 0
        self.done = 0
        self.failed = 0

    def __call__(self, rec: RequestRecord) -> None:
        if rec.warmup:
            self.warmup += 1
        else:
            self.done += 1
            self.failed += not rec.ok
        click.echo(f"\r  {self.line()} ", nl=False, err=True)

    def line(self) -> str:
        warmup = f"warm-up {self.warmup}  " if self.warmup else ""
        return f"{warmup}requests {self.done}  failed {self.failed}"


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
    # Requests that succeeded after a channel was lost are not counted but did succeed (the run is invalid: exit 4).
    empty = [s.get("point", "the run") for s in summaries
             if not s.get("requests_ok") and not s.get("requests_unmeasured")]
    if empty:
        raise FastmeterError(
            f"no request succeeded in {', '.join(empty)}: see the status and error columns of requests.arrow "
            "(is the server up at base_url, and does it serve the model?)"
        )


@click.command("bench")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@_options
@click.option("--force", is_flag=True, help="Write into an existing non-empty run directory, replacing our files.")
@click.option("--allow-degraded", is_flag=True,
              help="Exit 0 for a degraded run, and for a synthetic one when the synthetic source (or an emulator "
                   "through a FASTMETER_* override) was chosen; never for an invalid run.")
def bench_command(config: str | None, force: bool, allow_degraded: bool, **flags: str | None) -> None:
    """Benchmark an inference server while measuring energy; writes a run directory (samples.arrow,
    requests.arrow, chunks.arrow, metrics.arrow, run.json). CONFIG is a TOML file (see configs/); any of its
    keys can be given or overridden as a flag. `--concurrency 1,2,4,8` or `--rate 1,2,inf` runs a sweep and marks
    the best point within `--slo-ttft-p99-ms` / `--slo-itl-p99-ms`. Ctrl-C/SIGTERM stop it with what was measured
    written, exit 130/143; a run where no request succeeded exits 2. Otherwise the exit code follows the run's
    validity (run.json "validity"): 0 measured, 3 degraded, 4 invalid, 5 synthetic (docs/methodology.md,
    "Validity"). A CONFIG with a [task] table runs a model in-process instead of a server benchmark
    (configs/tasks/*.toml, docs/tasks.md): batches.arrow, items.arrow and run.json, same exit codes."""
    from fastmeter.bench.point import BenchHooks
    from fastmeter.bench.sweep import run_sweep
    from fastmeter.launch.bench import run_launched
    from fastmeter.launch.session import is_launched
    from fastmeter.matrix.config import is_matrix

    data = read_config_file(config) if config else {}
    given = {k: ("/".join(_BY_PARAM[k].names[:2]) if k == "bench_output_dir" else _BY_PARAM[k].names[0], v)
             for k, v in flags.items() if v is not None}
    data, origins = merge_overrides(data, given)
    if "task" in data:  # an in-process task (fastmeter.tasks, cli/task.py), not a server benchmark
        from fastmeter.cli.task import run_task_command

        run = run_task_command(data, config or "command line", origins, force, _notify)
        _exit_validity(Validity.from_dict(run["validity"]), allow_degraded)
        return
    if is_matrix(data):  # a top-level [matrix] table: servers/models x load points x repeats (docs/launch.md)
        _bench_matrix(data, config or "command line", force, allow_degraded)
        return
    cfg = validate_config(data, config or "command line", origins)
    out = cfg.bench.output_dir
    if out is None:
        raise ConfigError("no run directory given: pass -o DIR (or set [bench].output_dir)")
    note = _workload_note(cfg)
    if note:
        click.echo(f"warning: {note}", err=True)
    live = sys.stderr.isatty()
    hooks = BenchHooks(notify=_notify, on_request=_Progress() if live else None)
    try:
        if is_launched(cfg.server):  # fastmeter starts and stops the server (docs/launch.md)
            with _launch_interrupt_exits():
                result = run_launched(cfg, Path(out), force=force, hooks=hooks)
        else:
            result = run_sweep(cfg, Path(out), force=force, hooks=hooks)
    finally:
        if live:
            click.echo("", err=True)
    if note:  # again under the summary, where the figures it qualifies are
        click.echo(f"warning: {note}", err=True)
    _exit_status(result)
    _exit_validity(Validity.from_dict(result["validity"]), allow_degraded)


def _exit_validity(validity: Validity, allow_degraded: bool) -> None:
    """0 only for a measured run (or what --allow-degraded accepts); see fastmeter.validity.EXIT_CODES."""
    code = exit_code(validity, allow_degraded)
    click.echo(f"validity: {validity.summary()}", err=True)
    if code:
        accepted = validity.verdict is not Verdict.INVALID and exit_code(validity, True) == 0
        hint = " (--allow-degraded accepts it)" if accepted else ""
        click.echo(f"exit {code}: the run is {validity.verdict.value}, not a clean measurement{hint}", err=True)
        sys.exit(code)


def _workload_note(cfg: BenchConfig) -> str | None:
    """Reads the workload (so a missing or malformed dataset fails before anything is measured or created) and
    says when its prompts will repeat."""
    from fastmeter.load.runner import build_workload

    prompts = build_workload(cfg)
    if cfg.load.num_requests is None:
        return None
    points = max(len(cfg.bench.sweep_concurrency or ()), len(cfg.bench.sweep_rate or ()), 1)
    per_point = cfg.load.num_requests + cfg.load.warmup_requests
    note = workloads.cycling_note(len(prompts), per_point)
    return f"{note} (per sweep point)" if note and points > 1 else note


def _bench_matrix(data: dict[str, Any], source: str, force: bool, allow_degraded: bool) -> None:
    """Every cell of a matrix config, then its decision table; exits as a sweep does (worst cell's validity)."""
    from fastmeter.bench.point import BenchHooks
    from fastmeter.matrix.config import validate_matrix
    from fastmeter.matrix.run import run_matrix

    m = validate_matrix(data, source)
    if m.base.bench.output_dir is None:
        raise ConfigError("no matrix directory given: pass -o DIR (or set [bench].output_dir)")
    for entry in m.entries:  # every workload is read before anything starts
        _workload_note(next(iter(entry.points.values())))
    with _launch_interrupt_exits():
        result = run_matrix(m, Path(m.base.bench.output_dir), force=force, hooks=BenchHooks(notify=_notify))
    _exit_status(result)
    _exit_validity(Validity.from_dict(result["validity"]), allow_degraded)


@contextlib.contextmanager
def _launch_interrupt_exits() -> Iterator[None]:
    """SIGTERM while a launched server loads (or between matrix cells) exits 128 + N, as any interrupt does."""
    from fastmeter.launch.session import LaunchInterrupted

    try:
        yield
    except LaunchInterrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(exit_code_for_signal(exc.signum))
