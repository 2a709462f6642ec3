"""`fastmeter trace`: a power trace of anything, streamed to disk, with the conditions it was taken under."""

from __future__ import annotations

import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

import fastmeter
from fastmeter.assess import meter_validity, source_validity
from fastmeter.calibrate.result import calibration_for
from fastmeter.cli.params import FiniteFloatRange, sampler_options
from fastmeter.control import GpuControl, control_request
from fastmeter.errors import ConfigError
from fastmeter.io.stream import check_output_path, part_paths
from fastmeter.recorder import Recorder
from fastmeter.sources import permission_warnings
from fastmeter.telemetry import DEFAULT_TELEMETRY_HZ, telemetry_path_for
from fastmeter.tracing import DEFAULT_GRACE_S, run_trace

_DURATION_UNITS_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration_s(text: str) -> float:
    """`90`, `90s`, `15m`, `1h`, `2d` -> seconds (finite, > 0)."""
    unit = text[-1:] if text[-1:] in _DURATION_UNITS_S else "s"
    number = text[:-1] if text[-1:] in _DURATION_UNITS_S else text
    try:
        value = float(number) * _DURATION_UNITS_S[unit]
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"--rotate {text!r} is not a duration; use e.g. 30m, 1h, 2d or a number of seconds")
    return value


class _LiveLine:
    """Per-channel power since the last flush, redrawn in place on a terminal."""

    def __init__(self, m: fastmeter.Meter) -> None:
        self.m = m
        self.last: dict[str, float] = {}
        self.last_ns = fastmeter.Meter.now_ns()

    def __call__(self, _rows: int) -> None:
        now = fastmeter.Meter.now_ns()
        dt_s = (now - self.last_ns) * 1e-9
        totals = self.m.totals()
        if dt_s <= 0:
            return
        watts = "  ".join(f"{n} {(totals[n] - self.last.get(n, 0.0)) / dt_s:7.1f} W" for n in totals)
        total_j = math.fsum(totals[c.name] for c in self.m.channels if c.in_total)
        self.last, self.last_ns = totals, now
        click.echo(f"\r{watts}  | {total_j:10.1f} J  | {self.m.stats()['rate_hz']:8.0f} Hz ", nl=False, err=True)


@click.command("trace", context_settings={"ignore_unknown_options": True})
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False),
    default="trace.arrow",
    show_default=True,
    help="Output file: .arrow (Arrow IPC) or .parquet. An existing one is refused unless --force.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing output file (and its numbered parts).")
@click.option(
    "--duration",
    type=FiniteFloatRange(min=0, min_open=True),
    default=None,
    help="Seconds to trace. With COMMAND: at the duration the command's process group gets SIGTERM "
    "(SIGKILL after --grace), and tracing goes on until it has exited.",
)
@click.option(
    "--grace",
    "grace_s",
    type=FiniteFloatRange(min=0),
    default=DEFAULT_GRACE_S,
    show_default=True,
    help="Seconds a stopped COMMAND gets before the next signal (SIGTERM, then SIGKILL).",
)
@click.option(
    "--rotate",
    default=None,
    metavar="DURATION",
    help="Write numbered parts (trace.0000.arrow, ...), a new one every DURATION (e.g. 1h, 30m); "
    "`show` reads them as one trace.",
)
@sampler_options
@click.option(
    "--idle-baseline",
    type=FiniteFloatRange(min=0),
    default=0.0,
    help="Seconds of idle measurement before the run; reports net energy above idle.",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Sensor calibration to record in the metadata [default: ~/.cache/fastmeter/calibration.json "
    "when it exists; see `fastmeter calibrate`].",
)
@click.option(
    "--telemetry-hz",
    type=FiniteFloatRange(min=0, max=1000),
    default=DEFAULT_TELEMETRY_HZ,
    show_default=True,
    help="GPU/CPU telemetry rate (utilization, clocks, temperature, throttling), written beside the trace to "
    "<stem>-telemetry.arrow; 0 = off.",
)
@click.option(
    "--lock-clocks",
    "lock_clocks_mhz",
    type=click.IntRange(min=1),
    default=None,
    metavar="MHZ",
    help="Lock the GPUs' graphics clock to MHZ for the trace, restored after it (needs root; recorded).",
)
@click.option(
    "--power-limit",
    "power_limit_w",
    type=FiniteFloatRange(min=0, min_open=True),
    default=None,
    metavar="W",
    help="Set the GPUs' power limit to W for the trace, restored after it (needs root; recorded).",
)
@click.option(
    "--ray",
    "ray_address",
    default=None,
    metavar="ADDRESS",
    help="Trace every node of this Ray cluster into one file (channels node/channel, a `node` column, per-node "
    "fingerprints; needs fastmeter[ray]).",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def trace_command(
    output: str,
    force: bool,
    duration: float | None,
    grace_s: float,
    rotate: str | None,
    period_us: int,
    sources: tuple[str, ...],
    gpus: tuple[str, ...],
    idle_baseline: float,
    calibration: str | None,
    ray_address: str | None,
    telemetry_hz: float,
    lock_clocks_mhz: int | None,
    power_limit_w: float | None,
    command: tuple[str, ...],
) -> None:
    """Trace power for a duration, until Ctrl-C, or while COMMAND runs (`fastmeter trace -- python train.py`).
    COMMAND runs in its own process group, which receives Ctrl-C/SIGTERM (a second one escalates); trace exits
    with COMMAND's exit code (128 + N if a signal N ended it, or stopped the trace before COMMAND started)."""
    from fastmeter.env import collect_fingerprint, noise_warnings

    check_output_path(output, force=force)  # before anything slow
    rotate_s = parse_duration_s(rotate) if rotate is not None else None
    request = control_request(lock_clocks_mhz, power_limit_w, gpus)
    # Set before the meter opens (its fingerprint and telemetry see the settings); restored when the block ends,
    # also on SIGINT/SIGTERM (run_trace returns normally) and errors.
    with GpuControl(request) as control:
        options = {"nvml": {"gpus": ",".join(gpus)}} if gpus else {}
        if gpus and sources and "nvml" not in sources:
            raise ConfigError("--gpu selects NVIDIA GPUs, but --source does not include nvml")
        if ray_address is not None:
            from fastmeter.cluster.trace import cluster_trace_parts

            m, cluster_metadata, judge, recorder_options = cluster_trace_parts(
                ray_address, sources or "auto", period_us, options
            )
        else:
            m = fastmeter.Meter(sources or "auto", period_us, source_options=options, telemetry_hz=telemetry_hz)
            cluster_metadata, judge, recorder_options = {}, meter_validity, {}
        fingerprint = collect_fingerprint()
        metadata: dict[str, Any] = {
            "fingerprint": fingerprint,
            "sampler": {"period_us": period_us, "sources": m.sources},
            "channels": [asdict(c) for c in m.channels],
            "command": list(command),
            "fastmeter_version": fastmeter.__version__,
            "calibration": calibration_for(calibration),
            "control": control.record(),
            **cluster_metadata,
        }
        live = sys.stderr.isatty()
        recorder = Recorder(
            m,
            output,
            metadata,
            force=force,
            rotate_s=rotate_s,
            on_flush=_LiveLine(m) if live else None,
            telemetry_path=telemetry_path_for(Path(output)),
            **recorder_options,
        )
        for warning in noise_warnings(fingerprint):
            click.echo(f"warning: {warning.message}", err=True)
        for text in permission_warnings(m.skipped_sources):
            click.echo(f"warning: {text}", err=True)
        sources_judged = (
            m.source_reasons if ray_address else source_validity(m.sources, m.skipped_sources, channels=m.channels)
        )
        for reason in sources_judged.reasons:
            click.echo(f"warning: {reason.message}", err=True)

        try:
            result = run_trace(
                recorder,
                list(command),
                duration_s=duration,
                idle_baseline_s=idle_baseline,
                grace_s=grace_s,
                on_phase=lambda text: click.echo(f"{text} ...", err=True),
                judge=judge,
            )
        finally:
            if live:
                click.echo("", err=True)
    parts = part_paths(Path(output)) if rotate_s is not None else []
    where = f"{len(parts)} parts, {parts[0].name} to {parts[-1].name}" if len(parts) > 1 else str(result.path)
    click.echo(f"wrote {result.rows} samples to {where}", err=True)
    if recorder.telemetry_path is not None:
        click.echo(f"wrote telemetry to {recorder.telemetry_path}", err=True)
    click.echo(f"validity: {judge(m).summary()}", err=True)  # as written in the file's metadata
    if result.exit_code is not None:
        sys.exit(result.exit_code)
