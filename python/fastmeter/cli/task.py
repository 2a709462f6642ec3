"""`fastmeter bench task.toml`: a config with a [task] table runs a model in-process (fastmeter.tasks) instead of
benchmarking a server. Same run directory, summary, validity and exit codes as a server benchmark; only the
[bench] flags (output directory, sources, period, GPUs, idle baseline...) apply."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from fastmeter.errors import ConfigError
from fastmeter.recorder import exit_code_for_signal
from fastmeter.tasks.record import Batch


class _Progress:
    """Batches done (warm-up ones counted apart), redrawn in place on a terminal."""

    def __init__(self) -> None:
        self.warmup = 0
        self.done = 0
        self.items = 0

    def __call__(self, b: Batch) -> None:
        if b.warmup:
            self.warmup += 1
        else:
            self.done += 1
            self.items += b.items
        warmup = f"warm-up {self.warmup}  " if self.warmup else ""
        click.echo(f"\r  {warmup}batches {self.done}  items {self.items} ", nl=False, err=True)


def run_task_command(
    data: dict[str, Any], source: str, origins: dict[tuple[str, str], str], force: bool, notify: Any
) -> dict[str, Any]:
    """Validate, run and write the task; exits 128 + N after a signal. Returns run.json's content."""
    from fastmeter.tasks.config import validate_task_config
    from fastmeter.tasks.runner import TaskHooks, run_task

    cfg = validate_task_config(data, source, origins)
    if cfg.bench.output_dir is None:
        raise ConfigError("no run directory given: pass -o DIR (or set [bench].output_dir)")
    live = sys.stderr.isatty()
    hooks = TaskHooks(notify=notify, on_batch=_Progress() if live else None)
    try:
        run = run_task(cfg, Path(cfg.bench.output_dir), force=force, hooks=hooks)
    finally:
        if live:
            click.echo("", err=True)
    signum = run.get("interrupted_by_signal")
    if signum is not None:
        click.echo(f"interrupted by signal {signum}: the run directory holds what was measured", err=True)
        sys.exit(exit_code_for_signal(signum))
    return run
