"""A trace of anything: record until a duration, a signal, or the end of a command run in its own process group.

The command's process group receives the user's SIGINT/SIGTERM; if it has not exited `grace_s` later it gets
SIGTERM, then SIGKILL after another `grace_s`; a second signal from the user moves to the next step at once.
`duration_s` with a command stops the command at the duration the same way (SIGTERM, then SIGKILL). Recording and
flushing go on until the command has exited. A failed write (disk full, file size limit) stops the command the same
way and is raised once everything has stopped; the samples flushed before it stay readable.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastmeter.assess import meter_validity
from fastmeter.errors import FastmeterError
from fastmeter.recorder import Interrupt, Recorder
from fastmeter.validity import Validity

DEFAULT_GRACE_S = 5.0
# How often the main thread checks the command, the signals and the duration (flushing runs on its own thread).
POLL_S = 0.02


class CommandGroup:
    """A command in its own process group, stopped by an escalating ladder of signals sent to the whole group."""

    def __init__(self, command: list[str], grace_s: float) -> None:
        kwargs: dict[str, Any] = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
        try:
            self.proc = subprocess.Popen(command, **kwargs)
        except OSError as e:
            raise FastmeterError(f"cannot run {command[0]!r}: {e.strerror}; check the command after `--`") from None
        self.pgid = self.proc.pid
        self.grace_s = grace_s
        self.signals_sent: list[int] = []
        self._ladder: list[int] = []
        self._next_at: float | None = None

    @property
    def stopping(self) -> bool:
        return bool(self.signals_sent)

    def poll(self) -> int | None:
        code = self.proc.poll()
        if code is not None and self.stopping:
            self._kill_group(signal.SIGKILL)  # what is left of a group we were asked to stop
        return code

    def stop(self, first: int) -> None:
        """Start the ladder: `first`, then SIGTERM, then SIGKILL, `grace_s` apart."""
        if self.stopping:
            return
        self._ladder = [first] + [s for s in (signal.SIGTERM, signal.SIGKILL) if s != first]
        self.escalate()

    def escalate(self) -> None:
        """Send the next signal of the ladder now."""
        if not self._ladder:
            return
        s = self._ladder.pop(0)
        self._kill_group(s)
        self.signals_sent.append(s)
        self._next_at = time.monotonic() + self.grace_s if self._ladder else None

    def tick(self) -> None:
        if self._next_at is not None and time.monotonic() >= self._next_at and self.proc.poll() is None:
            self.escalate()

    def _kill_group(self, s: int) -> None:
        try:
            os.killpg(self.pgid, s)
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone already

    def exit_code(self) -> int:
        """The shell's convention: a command killed by signal N reports 128 + N."""
        code = self.proc.wait()
        return code if code >= 0 else 128 - code


@dataclass
class TraceResult:
    path: Path
    rows: int
    exit_code: int | None  # the command's, None without a command
    stopped_by: str  # "duration", "signal", "command" (it exited) or "error"
    signum: int | None
    idle_baseline_w: dict[str, float] = field(default_factory=dict)


def run_trace(
    recorder: Recorder,
    command: list[str],
    *,
    duration_s: float | None = None,
    idle_baseline_s: float = 0.0,
    grace_s: float = DEFAULT_GRACE_S,
    on_phase: Callable[[str], None] | None = None,
    judge: Callable[[Any], Validity] = meter_validity,
) -> TraceResult:
    """Record with `recorder` (not yet started) until `duration_s`, SIGINT/SIGTERM, or the end of `command`.
    judge(meter): the finished record's validity (a ClusterMeter judges itself: `ClusterMeter.validity`)."""
    if command and shutil.which(command[0]) is None:
        raise FastmeterError(f"cannot run {command[0]!r}: not found, or not executable; check the command after `--`")
    interrupt = Interrupt()
    child: CommandGroup | None = None
    idle_w: dict[str, float] = {}
    stopped_by = "command" if command else "duration"
    with interrupt.caught():
        recorder.start()
        try:
            if idle_baseline_s > 0:
                if on_phase is not None:
                    on_phase(f"measuring idle baseline for {idle_baseline_s:g} s")
                idle_w = recorder.measure_idle(idle_baseline_s, lambda: bool(interrupt.count or recorder.error))
            if command and interrupt.count == 0 and recorder.error is None:
                child = CommandGroup(command, grace_s)
            stopped_by = _wait(recorder, interrupt, child, duration_s, stopped_by)
        except BaseException:
            if child is not None and child.proc.poll() is None:
                child.stop(signal.SIGTERM)
                _wait_stopped(child)
            recorder.stop()
            raise
        if child is not None:
            exit_code: int | None = child.exit_code()
        else:  # a signal during the idle baseline: the command never ran, and the shell should hear why
            exit_code = interrupt.exit_code if command else None
        final = {
            "exit_code": exit_code,
            "idle_baseline_w": idle_w,
            "idle_baseline_s": idle_baseline_s,
            "stopped_by_signal": interrupt.signum,
            "stopped_by": stopped_by,
            "signals_sent": child.signals_sent if child is not None else [],
        }
        recorder.stop()  # validity: the record is complete; its verdict is written with it
        final["validity"] = judge(recorder.meter).to_dict()
        path = recorder.close(final)
    return TraceResult(path, recorder.rows, exit_code, stopped_by, interrupt.signum, idle_w)


def _wait(
    recorder: Recorder, interrupt: Interrupt, child: CommandGroup | None, duration_s: float | None, stopped_by: str
) -> str:
    t_end = None if duration_s is None else time.monotonic() + duration_s
    handled = 0  # user signals acted on
    while True:
        if child is None:
            if interrupt.count:
                return "signal"
            if recorder.error is not None:
                return "error"
            if t_end is not None and time.monotonic() >= t_end:
                return "duration"
        elif child.poll() is not None:
            return stopped_by
        else:
            if interrupt.count > handled:
                if child.stopping:
                    child.escalate()  # a second signal: next step at once
                else:
                    child.stop(interrupt.signum or signal.SIGTERM)
                handled, stopped_by = interrupt.count, "signal"
            elif not child.stopping and recorder.error is not None:
                child.stop(signal.SIGTERM)
                stopped_by = "error"
            elif not child.stopping and t_end is not None and time.monotonic() >= t_end:
                child.stop(signal.SIGTERM)
                stopped_by = "duration"
            child.tick()
        time.sleep(POLL_S)


def _wait_stopped(child: CommandGroup) -> None:
    while child.poll() is None:
        child.tick()
        time.sleep(POLL_S)
