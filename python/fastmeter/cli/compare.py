"""`fastmeter compare`: runs side by side, repeats pooled with confidence intervals, and an energy regression
gate for CI (exit 1 on a regression, 2 on bad input or runs that do not measure the same thing)."""

from __future__ import annotations

import click

from fastmeter.errors import ConfigError


def parse_percent(text: str) -> float:
    """ "15%" or "15" -> 15.0."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise ConfigError(f'--max-regression must be a percentage such as "15%" or "15", got {text!r}') from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"--max-regression must be a finite percentage >= 0, got {text!r}")
    return value


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--baseline", "baselines", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Baseline run directory (repeat for repeated runs; a directory of runs also works). "
                   "Default: the first RUN.")
@click.option("--metric", default=None,
              help="Metric the verdict and the gate use, e.g. energy_per_request_j, avg_power_w, output_tokens_per_j. "
                   "Default: energy_per_output_token_j; energy_per_item_j when every run is a task run without "
                   "output tokens (`fastmeter bench TASK.toml`).")
@click.option("--max-regression", "max_regression", default=None, metavar="PCT",
              help='Exit 1 when a candidate is worse than the baseline by more than PCT ("15%" or "15") and '
                   "the difference is outside the noise.")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json", "csv"]), default="table",
              show_default=True)
@click.option("--allow-mismatch", is_flag=True,
              help="Compare runs whose controlled variables (GPU, driver, CUDA, power limit, packages, workload) "
                   "differ; the differences are printed as warnings.")
def compare_command(runs: tuple[str, ...], baselines: tuple[str, ...], metric: str | None, max_regression: str | None,
                    fmt: str, allow_mismatch: bool) -> None:
    """Compare benchmark runs (directories written by `fastmeter bench`) side by side.

    Runs of the same config and environment are pooled as repeats (mean and 95% interval). Each other group is
    compared with the baseline on --metric; with --max-regression it is a regression, and the command exits 1,
    when it is worse by more than the threshold and the difference is significant (Welch's t-test, 95%).
    A RUN may also be a directory whose subdirectories are runs.
    """
    from fastmeter.analysis.compare import compare_runs, load_runs
    from fastmeter.analysis.compare_format import RENDERERS

    threshold = parse_percent(max_regression) if max_regression is not None else None
    loaded = load_runs([*baselines, *runs])
    if metric is None:  # J per output token, or J per item for task runs (image, detection, callable) that have none
        every = [r for group in loaded for r in group]
        no_tokens = all(r.summary.get("energy_per_output_token_j") is None and "energy_per_item_j" in r.summary
                        for r in every)
        metric = "energy_per_item_j" if no_tokens else "energy_per_output_token_j"
    if baselines:
        base = [r for group in loaded[:len(baselines)] for r in group]
        seen = {r.path.resolve() for r in base}
        candidates = [r for group in loaded[len(baselines):] for r in group if r.path.resolve() not in seen]
    else:
        base, candidates = loaded[0], [r for group in loaded[1:] for r in group]
    comparison = compare_runs(base, candidates, metric, threshold, allow_mismatch)
    for warning in comparison.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(RENDERERS[fmt](comparison), nl=False)
    if comparison.regression:
        failed = ", ".join(v.candidate.label for v in comparison.verdicts if v.regression)
        click.echo(f"energy regression: {failed} worse than the baseline by more than {threshold:g}% "
                   f"on {comparison.metric.name}", err=True)
        raise SystemExit(1)
