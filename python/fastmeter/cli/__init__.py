"""The `fastmeter` command line: a Click group with one module per command.

Exit codes: 0 success, 1 a check failed (e.g. `env --check` found differences), 2 bad input or unusable
environment (any FastmeterError, reported as one line without a traceback).
"""

from __future__ import annotations

from typing import Any

import click

from fastmeter.cli.bench import bench_command
from fastmeter.cli.calibrate import calibrate_command
from fastmeter.cli.compare import compare_command
from fastmeter.cli.env import env_command
from fastmeter.cli.report import report_command
from fastmeter.cli.show import show_command
from fastmeter.cli.sources import sources_command
from fastmeter.cli.trace import trace_command
from fastmeter.errors import FastmeterError

EXIT_CHECK_FAILED = 1
EXIT_ERROR = 2


class _CommandError(click.ClickException):
    exit_code = EXIT_ERROR


class _Group(click.Group):
    """Turns a FastmeterError raised by any command into Click's one-line "Error: ..." and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FastmeterError as exc:
            raise _CommandError(str(exc)) from exc


@click.group(cls=_Group)
@click.version_option(package_name="fastmeter")
def main() -> None:
    """Rigorous, low-overhead energy measurement for AI models and inference servers."""


for command in (
    bench_command,
    calibrate_command,
    compare_command,
    env_command,
    report_command,
    show_command,
    sources_command,
    trace_command,
):
    main.add_command(command)

# --- commands added with the exporter (issue 17) ---
from fastmeter.cli.export import export_command  # noqa: E402

main.add_command(export_command)

# --- training integrations ---
from fastmeter.cli.export_codecarbon import export_codecarbon_command  # noqa: E402

main.add_command(export_codecarbon_command)
