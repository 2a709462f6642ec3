"""`fastmeter compare`: runs side by side, repeats pooled with confidence intervals, and an energy regression
gate for CI (exit 1 on a regression, 2 on bad input or runs that do not measure the same thing)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fastmeter.errors import ConfigError

if TYPE_CHECKING:
    from fastmeter.analysis.compare import Comparison


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
@click.option("--vary", type=click.Choice(["server", "model", "concurrency", "rate"]), default=None,
              help="The one variable the runs may differ in; refuse when anything else differs. With a matrix "
                   "directory (`fastmeter bench MATRIX.toml`) as the only RUN: compare its cells across that "
                   "variable (servers or models at each load point, load points of each entry).")
def compare_command(runs: tuple[str, ...], baselines: tuple[str, ...], metric: str | None, max_regression: str | None,
                    fmt: str, allow_mismatch: bool, vary: str | None) -> None:
    """Compare benchmark runs (directories written by `fastmeter bench`) side by side.

    Runs of the same config and environment are pooled as repeats (mean and 95% interval). Each other group is
    compared with the baseline on --metric; with --max-regression it is a regression, and the command exits 1,
    when it is worse by more than the threshold and the difference is significant (Welch's t-test, 95%).
    A RUN may also be a directory whose subdirectories are runs.
    """
    from fastmeter.analysis.compare import compare_runs, load_runs

    threshold = parse_percent(max_regression) if max_regression is not None else None
    if len(runs) == 1 and not baselines and (Path(runs[0]) / "matrix.json").is_file():
        _compare_matrix(Path(runs[0]), vary, metric, threshold, fmt, allow_mismatch)
        return
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
    comparison = compare_runs(base, candidates, metric, threshold, allow_mismatch, vary)
    _show(comparison, fmt)
    _gate(comparison, threshold)


def _show(comparison: Comparison, fmt: str) -> None:
    from fastmeter.analysis.compare_format import RENDERERS

    for label, what in comparison.varies.items():
        if what != "nothing":
            click.echo(f"{label} differs from the baseline in: {what}", err=True)
    for warning in comparison.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(RENDERERS[fmt](comparison), nl=False)


def _gate(comparison: Comparison, threshold: float | None) -> None:
    if comparison.regression:
        failed = ", ".join(v.candidate.label for v in comparison.verdicts if v.regression)
        click.echo(f"energy regression: {failed} worse than the baseline by more than {threshold:g}% "
                   f"on {comparison.metric.name}", err=True)
        raise SystemExit(1)


def _compare_matrix(matrix_dir: Path, vary: str | None, metric: str | None, threshold: float | None, fmt: str,
                    allow_mismatch: bool) -> None:
    """One comparison per load point (--vary server/model) or per entry (--vary concurrency/rate); exit 1 when any
    of them finds a regression."""
    from fastmeter.analysis.compare import DEFAULT_METRIC, compare_runs, load_run
    from fastmeter.analysis.vary import matrix_comparisons

    if vary is None:
        raise ConfigError(f"{matrix_dir} is a matrix directory: pass --vary server|model|concurrency|rate, or its "
                          "cell directories (DIR/<entry>/<point>) as RUNs")
    plans = matrix_comparisons(matrix_dir, vary)
    if not plans:
        raise ConfigError(f"{matrix_dir} holds no two cells that differ in {vary}")
    regressions = []
    for title, base_dirs, cand_dirs in plans:
        def load(dirs: list[Path]) -> list[Any]:
            return [load_run(d, str(d.relative_to(matrix_dir))) for d in dirs]

        click.echo(f"== {title}", err=True)
        comparison = compare_runs(load(base_dirs), load(cand_dirs), metric or DEFAULT_METRIC, threshold, allow_mismatch,
                                  vary)
        _show(comparison, fmt)
        regressions.append(comparison)
    for comparison in regressions:
        _gate(comparison, threshold)
