"""Click parameter types shared by the commands."""

from __future__ import annotations

import math
from typing import Any

import click

from fastmeter.load.config_check import GPU, Invalid
from fastmeter.sources import SOURCE_NAMES


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that also refuses nan and inf: `nan` passes every comparison of a range check (`--duration
    nan` was accepted and then ignored), and an infinite duration or baseline never ends."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


class GpuId(click.ParamType):
    """A GPU index or UUID, checked as `[bench].gpus` items are (fastmeter.load.config_check.GPU), kept as text."""

    name = "GPU"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return str(GPU(value))
        except Invalid as exc:
            self.fail(str(exc), param, ctx)


GPU_ID = GpuId()


def sampler_options(command: Any) -> Any:
    """`--period-us`, `--source`, `--gpu`: what a command that runs its own Meter asks of the sampler (`trace`,
    `export`), declared once so the commands cannot drift apart."""
    command = click.option(
        "--gpu", "gpus", multiple=True, type=GPU_ID, help="GPU index or UUID to read (repeatable; default all)."
    )(command)
    command = click.option(
        "--source",
        "sources",
        multiple=True,
        type=click.Choice(SOURCE_NAMES),
        help="Source to read (repeatable). Default: every hardware source available, else synthetic.",
    )(command)
    return click.option(
        "--period-us", type=int, default=1000, show_default=True, help="Sampling period in microseconds."
    )(command)
