"""`fastmeter bench` of a server fastmeter launches: start it, run the benchmark (one point or a sweep) against it,
stop it; the run directory gets the server's log and launch.json. A server that exits during the run makes the
runs it was part of invalid (reason `server_exited`) and fails the bench with its exit code and log tail, after
everything measured is written."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastmeter.bench.point import BenchHooks
from fastmeter.bench.sweep import run_sweep
from fastmeter.errors import ConfigError
from fastmeter.launch.process import ServerLaunchError, log_tail
from fastmeter.launch.session import LOG_NAME, launched_server, mark_exit, move_logs
from fastmeter.load.config import BenchConfig


def run_launched(
    cfg: BenchConfig, out_dir: Path, *, force: bool = False, hooks: BenchHooks = BenchHooks()
) -> dict[str, Any]:
    """run_sweep's result; the server is stopped before this returns or raises."""
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:  # say so before a minute-long server start
        raise ConfigError(
            f"run directory {out_dir} already exists and is not empty; choose another --output-dir "
            "or pass --force to overwrite it"
        )
    log_dir = Path(tempfile.mkdtemp(prefix="fastmeter-server-"))  # the run directory does not exist yet
    crashed = None
    try:
        with launched_server(cfg, log_dir, hooks.notify) as launched:
            result = run_sweep(cfg, out_dir, force=force, hooks=hooks, launch=launched.identity)
            launched.rearm()
            if launched.exited:
                for run_json in sorted(out_dir.glob("**/run.json")):
                    mark_exit(run_json, launched)
                code = launched.process.exit_code
                crashed = (
                    f"the launched server exited (code {code}) during the run: the run is invalid, and "
                    f"{out_dir} holds what was measured; last lines of {out_dir / LOG_NAME}:\n"
                    f"{log_tail(log_dir / LOG_NAME)}"
                )
    finally:
        if out_dir.is_dir():
            move_logs(log_dir, out_dir)
            shutil.rmtree(log_dir, ignore_errors=True)
    if crashed is not None:
        raise ServerLaunchError(crashed)
    return result
