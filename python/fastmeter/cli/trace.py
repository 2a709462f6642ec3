"""`fastmeter trace`: a power trace of anything, streamed to disk, with the conditions it was taken under."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from typing import Any

import click

import fastmeter
from fastmeter.calibrate.result import calibration_for
from fastmeter.cli.params import FiniteFloatRange
from fastmeter.errors import ConfigError, FastmeterError
from fastmeter.io.stream import TraceWriter, check_output_path
from fastmeter.sources import SOURCE_NAMES, permission_warnings

FLUSH_INTERVAL_S = 0.5  # at most this much is lost to a SIGKILL


class _StopRequested:
    """SIGINT/SIGTERM set a flag; the main loop notices it and finishes the file cleanly."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequested:
        for s in (signal.SIGINT, signal.SIGTERM):
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)


def _live_line(m: fastmeter.Meter, last: dict[str, float], dt_s: float) -> str:
    totals = m.totals()
    watts = "  ".join(f"{n} {(totals[n] - last.get(n, 0.0)) / dt_s:7.1f} W" for n in totals) if dt_s > 0 else ""
    total_j = math.fsum(totals[c.name] for c in m.channels if c.in_total)
    last.update(totals)
    return f"\r{watts}  | {total_j:10.1f} J  | {m.stats()['rate_hz']:8.0f} Hz "


def _measure_idle(m: fastmeter.Meter, seconds: float, stop: _StopRequested) -> dict[str, float]:
    click.echo(f"measuring idle baseline for {seconds:g} s ...", err=True)
    with m.window("idle") as w:
        end = time.monotonic() + seconds
        while time.monotonic() < end and stop.signum is None:
            time.sleep(0.05)
    return {n: e / w.duration_s for n, e in w.by_channel.items() if w.duration_s > 0 and not math.isnan(e)}


@click.command("trace", context_settings={"ignore_unknown_options": True})
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), default="trace.arrow", show_default=True,
              help="Output file: .arrow (Arrow IPC) or .parquet.")
@click.option("--duration", type=FiniteFloatRange(min=0, min_open=True), default=None,
              help="Seconds to trace (default: until Ctrl-C, or while COMMAND runs).")
@click.option("--period-us", type=int, default=1000, show_default=True, help="Sampling period in microseconds.")
@click.option("--source", "sources", multiple=True, type=click.Choice(SOURCE_NAMES),
              help="Source to read (repeatable). Default: every hardware source available, else synthetic.")
@click.option("--gpu", "gpus", multiple=True, help="GPU index or UUID to read (repeatable; default all).")
@click.option("--idle-baseline", type=FiniteFloatRange(min=0), default=0.0,
              help="Seconds of idle measurement before the run; reports net energy above idle.")
@click.option("--calibration", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Sensor calibration to record in the metadata [default: ~/.cache/fastmeter/calibration.json "
                   "when it exists; see `fastmeter calibrate`].")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def trace_command(output: str, duration: float | None, period_us: int, sources: tuple[str, ...],
                  gpus: tuple[str, ...], idle_baseline: float, calibration: str | None,
                  command: tuple[str, ...]) -> None:
    """Trace power for a duration, until Ctrl-C, or while COMMAND runs (`fastmeter trace -- python train.py`);
    exits with COMMAND's exit code."""
    from fastmeter.env import collect_fingerprint, noise_warnings

    path = check_output_path(output)
    options = {"nvml": {"gpus": ",".join(gpus)}} if gpus else {}
    if gpus and sources and "nvml" not in sources:
        raise ConfigError("--gpu selects NVIDIA GPUs, but --source does not include nvml")
    m = fastmeter.Meter(sources or "auto", period_us, source_options=options)
    fingerprint = collect_fingerprint()
    for warning in noise_warnings(fingerprint):
        click.echo(f"warning: {warning.message}", err=True)
    for text in permission_warnings(m.skipped_sources):
        click.echo(f"warning: {text}", err=True)

    exit_code: int | None = None
    idle_w: dict[str, float] = {}
    live = sys.stderr.isatty()
    with _StopRequested() as stop:
        m.start()
        writer = TraceWriter(path, {
            "fingerprint": fingerprint,
            "sampler": {"period_us": period_us, "sources": m.sources},
            "realtime_anchor": dict(zip(("monotonic_ns", "realtime_ns"), m.realtime_anchor)),
            "channels": [asdict(c) for c in m.channels],
            "command": list(command),
            "fastmeter_version": fastmeter.__version__,
            "calibration": calibration_for(calibration),
        })
        written = 0
        try:
            if idle_baseline > 0:
                idle_w = _measure_idle(m, idle_baseline, stop)
            proc = _spawn(command) if command and stop.signum is None else None
            t_start = time.monotonic()
            last_totals: dict[str, float] = {}
            last_t = t_start
            while stop.signum is None:
                if proc is not None and proc.poll() is not None:
                    break
                if duration is not None and time.monotonic() - t_start >= duration:
                    break
                time.sleep(min(FLUSH_INTERVAL_S, duration or FLUSH_INTERVAL_S))
                n = m.sample_count()
                writer.write(m.samples(written, n))
                written = n
                if live:
                    now = time.monotonic()
                    click.echo(_live_line(m, last_totals, now - last_t), nl=False, err=True)
                    last_t = now
            if proc is not None:
                if stop.signum is not None and proc.poll() is None:
                    proc.send_signal(stop.signum)  # pass the user's Ctrl-C / SIGTERM on to the command
                exit_code = proc.wait()
        finally:
            m.stop()
            writer.write(m.samples(written))
            final = writer.close({
                "sampler_stats": m.stats(),
                "exit_code": exit_code,
                "idle_baseline_w": idle_w,
                "idle_baseline_s": idle_baseline,
                "stopped_by_signal": stop.signum,
            })
    if live:
        click.echo("", err=True)
    click.echo(f"wrote {writer.rows} samples to {final}", err=True)
    if exit_code is not None:
        # A command killed by a signal reports -N; shells report 128 + N.
        sys.exit(exit_code if exit_code >= 0 else 128 - exit_code)


def _spawn(command: tuple[str, ...]) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(list(command))
    except OSError as e:
        raise FastmeterError(f"cannot run {command[0]!r}: {e.strerror}; check the command after `--`") from None


