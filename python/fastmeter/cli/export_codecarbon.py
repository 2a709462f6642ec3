"""`fastmeter export-codecarbon`: append run directories to a CodeCarbon-style emissions.csv."""

from __future__ import annotations

from pathlib import Path

import click

from fastmeter.cli.params import FiniteFloatRange
from fastmeter.integrations.codecarbon import write_emissions_csv


@click.command("export-codecarbon")
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("emissions.csv"),
    show_default=True,
    help="The CSV to append to (created with CodeCarbon's header when new).",
)
@click.option(
    "--grid-gco2-per-kwh",
    type=FiniteFloatRange(min=0),
    default=None,
    help="Grid carbon intensity; without it `emissions` stays empty (unknown, not 0).",
)
@click.option(
    "--pue",
    type=FiniteFloatRange(min=1),
    default=1.0,
    show_default=True,
    help="Data-centre power usage effectiveness, applied to the energies as CodeCarbon does.",
)
@click.option(
    "--wue-l-per-kwh",
    type=FiniteFloatRange(min=0),
    default=None,
    help="Water usage effectiveness; without it `water_consumed` stays empty.",
)
@click.option("--project-name", default="fastmeter", show_default=True)
@click.option("--country-iso-code", default="", help="e.g. FRA; empty when not given.")
def export_codecarbon_command(
    runs: tuple[Path, ...],
    output: Path,
    grid_gco2_per_kwh: float | None,
    pue: float,
    wue_l_per_kwh: float | None,
    project_name: str,
    country_iso_code: str,
) -> None:
    """Append one row per RUNS directory (`fastmeter bench -o DIR` or a training run) to OUTPUT in CodeCarbon's
    emissions.csv columns and units (docs/format.md, "CodeCarbon emissions.csv")."""
    for run in runs:
        write_emissions_csv(
            run, output, project_name=project_name, grid_gco2_per_kwh=grid_gco2_per_kwh, pue=pue,
            wue_l_per_kwh=wue_l_per_kwh, country_iso_code=country_iso_code,
        )  # fmt: skip
    click.echo(f"{len(runs)} row(s) appended to {output}", err=True)
