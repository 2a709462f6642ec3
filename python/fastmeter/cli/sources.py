"""`fastmeter sources`: every source and channel, available or not and why, with a one-second power reading."""

from __future__ import annotations

import math
import time

import click

import fastmeter

# Why a source cannot run, in words (SourceInfo.kind); the reason line under it says what to do.
STATE = {"unavailable": "not available on this machine", "permission": "present, but not readable by this user",
         "config": "not usable with these options"}


@click.command("sources")
@click.option("--seconds", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="How long to measure each available channel's average power.")
def sources_command(seconds: float) -> None:
    """List power sources and their channels, with why a source is unavailable and how to fix it."""
    infos = fastmeter.available_sources()
    usable = [i.name for i in infos if i.available]
    watts: dict[str, float] = {}
    if usable:
        with fastmeter.Meter(usable, 1000) as m:
            with m.window("probe") as w:
                time.sleep(seconds)
        watts = {n: e / w.duration_s for n, e in w.by_channel.items()}
    for info in infos:
        state = "available" if info.available else STATE.get(info.kind, "not available")
        click.echo(f"{info.name:<10} {state}")
        if not info.available:
            click.echo(f"    {info.reason}")
        for c in info.channels:
            w_now = watts.get(c.name, math.nan)
            total = "" if c.in_total else "  (not in totals: covered by another channel)"
            reading = "counter+power" if c.has_counter and c.has_power else ("counter" if c.has_counter else "power")
            click.echo(f"    {c.name:<16}{w_now:9.2f} W   {c.domain:<9} {reading:<14} {c.device}{total}")
