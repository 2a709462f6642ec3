"""`fastmeter export`: a Prometheus endpoint over a running meter, for fleets that scrape DCGM or node exporters."""

from __future__ import annotations

import time

import click

from fastmeter.cli.params import FiniteFloatRange, sampler_options
from fastmeter.errors import ConfigError
from fastmeter.export.server import Exporter, parse_listen
from fastmeter.recorder import Interrupt


@click.command("export")
@click.option("--listen", required=True, metavar="HOST:PORT", help="Address to serve /metrics on (port 0: any free).")
@sampler_options
@click.option(
    "--ray",
    "ray_address",
    default=None,
    metavar="ADDRESS",
    help="Meter every node of this Ray cluster (channels node/channel; needs fastmeter[ray]).",
)
@click.option(
    "--duration",
    type=FiniteFloatRange(min=0, min_open=True),
    default=None,
    help="Seconds to serve (default: until Ctrl-C).",
)
def export_command(
    listen: str,
    period_us: int,
    sources: tuple[str, ...],
    gpus: tuple[str, ...],
    ray_address: str | None,
    duration: float | None,
) -> None:
    """Serve per-channel energy counters, power, validity and sampler health for Prometheus at
    http://HOST:PORT/metrics (metric names: docs/export.md) until Ctrl-C or --duration."""
    import fastmeter
    from fastmeter.assess import meter_validity

    host, port = parse_listen(listen)
    options = {"nvml": {"gpus": ",".join(gpus)}} if gpus else {}
    if gpus and sources and "nvml" not in sources:
        raise ConfigError("--gpu selects NVIDIA GPUs, but --source does not include nvml")
    if ray_address is not None:
        from fastmeter.cluster import ClusterMeter

        meter = ClusterMeter(sources or "auto", period_us, address=ray_address, source_options=options)
        judge = meter.validity
    else:
        local = fastmeter.Meter(sources or "auto", period_us, source_options=options)
        meter, judge = local, lambda: meter_validity(local)
    interrupt = Interrupt()
    with meter, interrupt.caught(), Exporter(meter, judge, host, port) as exporter:
        click.echo(f"serving {exporter.url} (channels: {', '.join(meter.channel_names)})", err=True)
        end = None if duration is None else time.monotonic() + duration
        while interrupt.signum is None and (end is None or time.monotonic() < end):
            time.sleep(0.1)
    click.echo("stopped", err=True)
