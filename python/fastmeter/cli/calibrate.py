"""`fastmeter calibrate`: measure how each GPU's NVML power and energy readings lag and average."""

from __future__ import annotations

import math

import click

from fastmeter.calibrate import default_calibration_path, run_calibration, save_calibration
from fastmeter.calibrate.load import LOAD_KINDS
from fastmeter.cli.params import FiniteFloatRange


def _fmt(x: float | None, spec: str = "8.1f") -> str:
    return " " * (int(spec.split(".")[0]) - 1) + "-" if x is None or math.isnan(x) else format(x, spec)


@click.command("calibrate")
@click.option(
    "--gpu", "gpus", multiple=True, type=click.IntRange(min=0), help="GPU index to calibrate (repeatable; default all)."
)
@click.option(
    "--period-ms",
    type=FiniteFloatRange(min=1, min_open=False),
    default=400.0,
    show_default=True,
    help="Nominal period of the square load; each on/off phase is jittered +-50% around it.",
)
@click.option(
    "--duty",
    type=FiniteFloatRange(0, 1, min_open=True, max_open=True),
    default=0.5,
    show_default=True,
    help="Fraction of each period the load is on.",
)
@click.option(
    "--duration-s",
    type=FiniteFloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds of load (plus 1.5 s of idle lead-in).",
)
@click.option(
    "--poll-us",
    type=click.IntRange(min=50),
    default=500,
    show_default=True,
    help="NVML polling period in microseconds.",
)
@click.option(
    "--load",
    type=click.Choice(LOAD_KINDS),
    default="auto",
    show_default=True,
    help="GPU load: cuda kernel, torch matmuls, or none (tests: the NVML emulator's waveform is the load).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the jittered load schedule.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to save the JSON result [default: ~/.cache/fastmeter/calibration.json, which "
    "`fastmeter trace` records automatically].",
)
def calibrate_command(
    gpus: tuple[int, ...],
    period_ms: float,
    duty: float,
    duration_s: float,
    poll_us: int,
    load: str,
    seed: int,
    output: str | None,
) -> None:
    """Play a jittered square-wave load on each GPU while polling NVML fields 83 (energy counter), 186 (instant
    power) and 185 (average power); estimate each field's update period, averaging window and delay."""
    result = run_calibration(
        list(gpus), period_ms=period_ms, duty=duty, duration_s=duration_s, poll_us=poll_us, load=load, seed=seed
    )
    click.echo(
        f"{'gpu':>3}  {'field':<15}{'update ms':>10}{'window ms':>10}{'delay ms':>9}"
        f"{'low W':>8}{'high W':>8}{'rms W':>7}"
    )
    for gpu in result["gpus"]:
        for name, f in gpu["fields"].items():
            period = _fmt(f["update_period_ms"], "9.1f") + (" " if f["update_resolved"] else "*")
            click.echo(
                f"{gpu['index']:>3}  {name:<15}{period:>10}{_fmt(f['averaging_window_ms'], '10.1f')}"
                f"{_fmt(f['delay_ms'], '9.1f')}{_fmt(f['low_w'], '8.1f')}{_fmt(f['high_w'], '8.1f')}"
                f"{_fmt(f['rms_residual_w'], '7.2f')}"
            )
        click.echo(
            f"{gpu['index']:>3}  integrated instant power vs energy counter: "
            f"{_fmt(gpu['counter_vs_power_pct'], '+.2f').strip()} %  ({gpu['name']}, "
            f"{gpu['n_polls']} polls every {gpu['poll_interval_us']:.0f} us)"
        )
    if any(not f["update_resolved"] for g in result["gpus"] for f in g["fields"].values()):
        click.echo("* no regular update grid seen: the field changed at (nearly) every poll or only at load edges")
    path = save_calibration(result, output or default_calibration_path())
    click.echo(f"wrote {path}", err=True)
