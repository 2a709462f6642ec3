"""A server process fastmeter owns: started in its own session (so the server and every worker it forks form one
process group that can be stopped together), its stdout and stderr captured to one log file, its exit noticed the
moment it happens, and stopped by signal escalation (SIGTERM to the group, SIGKILL after a grace period).

Readiness reuses the bench's own check (fastmeter.adapters.ready) in short rounds, so a server that dies while
loading fails at once with its exit code and the last lines of its log, instead of after the timeout.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fastmeter.adapters.ready import ServerUnreachableError, check_ready
from fastmeter.errors import FastmeterError

LOG_TAIL_LINES = 20
_READY_ROUND_S = 1.0  # one readiness round; between rounds the process is checked for an exit


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_libc = ctypes.CDLL(None, use_errno=True)


def _term_with_parent() -> None:
    """In the child, before exec: SIGTERM when fastmeter dies (even by SIGKILL), which a server in its own session
    would otherwise outlive. The parent is the forking thread, the main one, which lives as long as fastmeter."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class ServerLaunchError(FastmeterError):
    """The launched server could not be started, did not become ready, or exited when it should not have."""


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a log (read from its end: a server log can be large)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(log {path} unreadable: {exc.strerror or exc})"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in tail) if tail else "  | (the log is empty)"


class ServerProcess:
    """One launched server. `exit_code` / `exited_ns` say whether and when (CLOCK_MONOTONIC ns) it exited on its
    own; `stop()` records how it was stopped."""

    def __init__(
        self, argv: Sequence[str], env_set: Mapping[str, str], log_path: Path, stop_argv: Sequence[str] | None = None
    ) -> None:
        self.argv = list(argv)
        self.env_set = dict(env_set)
        self.log_path = log_path
        self._stop_argv = list(stop_argv) if stop_argv else None  # a container is stopped through its engine
        self.exit_code: int | None = None
        self.exited_ns: int | None = None
        self.stopping = False
        self.stop_record: dict[str, Any] | None = None
        env = {**os.environ, **self.env_set}
        try:
            with open(log_path, "wb") as log:
                self._proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_term_with_parent,
                )
        except OSError as exc:
            raise ServerLaunchError(
                f"cannot start the server ({self.argv[0]}): {exc.strerror or exc}; check [server].launch"
            ) from None
        self.started_ns = time.monotonic_ns()
        self.pid = self._proc.pid
        self._watcher = threading.Thread(target=self._watch, name="fastmeter-server-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        code = self._proc.wait()  # blocks until the server exits: no polling
        self.exited_ns = time.monotonic_ns()
        self.exit_code = code

    @property
    def alive(self) -> bool:
        return self.exited_ns is None

    def describe_exit(self) -> str:
        code = self.exit_code
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        return f"the server {how}; last lines of {self.log_path}:\n{log_tail(self.log_path)}"

    def wait_ready(self, base_url: str, timeout_s: float) -> str:
        """The readiness path that answered 2xx; ServerLaunchError (with the log tail) when the server exits or
        the time is up. Does not stop the server: the caller's `stop()` does, whatever happens."""
        return asyncio.run(self._wait_ready(base_url, timeout_s))

    async def _wait_ready(self, base_url: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        why = "no answer"
        while self.alive:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerLaunchError(
                    f"the launched server did not become ready at {base_url} within {timeout_s:g} s ({why}); "
                    f"raise [server].launch_ready_timeout_s or check its command; last lines of {self.log_path}:\n"
                    f"{log_tail(self.log_path)}"
                )
            try:
                return await check_ready(base_url, min(_READY_ROUND_S, left))
            except ServerUnreachableError as exc:
                if "neither" in str(exc):  # it answers HTTP, but not as an inference server: waiting will not help
                    raise ServerLaunchError(
                        f"{exc}; last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                    ) from None
                why = str(exc).split(" (waited")[0]
        self._watcher.join()
        raise ServerLaunchError(f"before it was ready at {base_url}, {self.describe_exit()}")

    def stop(self, grace_s: float) -> dict[str, Any]:
        """Stop the server and every process of its group: SIGTERM (or the container engine's stop), SIGKILL
        after `grace_s`. Returns (and keeps) what happened. Safe to call twice."""
        if self.stop_record is not None:
            return self.stop_record
        self.stopping = True
        record: dict[str, Any] = {"grace_s": grace_s, "exited_before_stop": not self.alive, "signal": None}
        t0 = time.monotonic_ns()
        if self.alive:
            record["signal"] = "SIGTERM"
            if self._stop_argv is not None:
                subprocess.run(
                    self._stop_argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=grace_s + 30.0,
                    check=False,
                )
            self._signal_group(signal.SIGTERM)
            self._watcher.join(grace_s)
            if self.alive:
                record["signal"] = "SIGKILL"
                self._signal_group(signal.SIGKILL)
                self._watcher.join()
        # Workers may outlive the server's main process for a moment: they are in its group.
        self._signal_group(signal.SIGKILL)
        record["stop_s"] = (time.monotonic_ns() - t0) * 1e-9
        record["exit_code"] = self.exit_code
        self.stop_record = record
        return record

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass  # the whole group is gone
