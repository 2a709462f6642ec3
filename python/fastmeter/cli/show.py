"""`fastmeter show`: what a trace says — energy, power, idle baseline, and how well it was sampled."""

from __future__ import annotations

import math
from pathlib import Path

import click

from fastmeter.analysis.trace_summary import channel_columns, summarize_batches
from fastmeter.errors import ConfigError
from fastmeter.io.read import Trace, TraceBatches, open_trace, read_trace


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def render_summary(trace: TraceBatches) -> str:
    """The summary, read batch by batch: a trace of any length is shown in bounded memory."""
    meta = trace.metadata
    idle = meta.get("idle_baseline_w") or {}
    duration_s, n_rows, rows = summarize_batches(trace.batches(), trace.channels, idle)
    lines = [f"duration      {duration_s:.3f} s   samples {n_rows}"]
    if not trace.complete:
        lines.append("status        INCOMPLETE: the recorder stopped before finishing; samples up to its last flush")
    if meta.get("command"):
        lines.append(f"command       {' '.join(meta['command'])}   exit code {meta.get('exit_code')}")
    lines.append("")
    lines.append(f"{'channel':<16}{'energy J':>12}{'avg W':>10}{'peak W':>10}{'idle W':>10}{'net J':>12}")
    for r in rows:
        lines.append(
            f"{r.channel:<16}{r.energy_j:>12.3f}{_fmt(r.avg_power_w, '.2f'):>10}{_fmt(r.peak_power_w, '.2f'):>10}"
            f"{_fmt(r.idle_power_w, '.2f'):>10}{_fmt(r.net_energy_j, '.3f'):>12}"
        )
    stats = meta.get("sampler_stats")
    if stats:
        lines.append("")
        lines.append(
            f"sampler       {stats['rate_hz']:.0f} Hz (period {meta['sampler']['period_us']} us)  jitter p50 "
            f"{stats['jitter_p50_us']:.0f} us  p99 {stats['jitter_p99_us']:.0f} us  max {stats['jitter_max_us']:.0f} us"
            f"  missed {stats['missed']}  dropped {stats['dropped']}"
        )
        for name, period in (stats.get("update_period_s") or {}).items():
            lines.append(f"  {name:<14}counter update period {_fmt(period and period * 1e3, '.2f')} ms")
        for name, err in (stats.get("errors") or {}).items():
            lines.append(f"  {name:<14}FAILED: {err}")
    rec = meta.get("recorder")
    if rec:
        lines.append(
            f"recorder      {rec['flushes']} flushes every {rec['flush_interval_s']:.2f} s, longest "
            f"{rec['flush_max_ms']:.1f} ms; peak RSS {rec['peak_rss_mib']:.0f} MiB"
        )
    return "\n".join(lines)


def _check_matplotlib() -> None:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'fastmeter[plot]'") from None
    matplotlib.use("Agg")


def plot_trace(trace: Trace, out: Path) -> None:
    _check_matplotlib()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    t_min = trace.table.column("t_ns").to_numpy().min()
    for name in trace.channels:
        t, e, p = channel_columns(trace.table, name)
        if len(t) < 2:
            continue
        if not any(map(math.isfinite, p)):  # no power readings: the slope of the energy curve
            p = [float("nan"), *((e[1:] - e[:-1]) / ((t[1:] - t[:-1]) * 1e-9))]
        ax.plot((t - t_min) * 1e-9, p, label=name, linewidth=0.8)
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("power (W)")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


@click.command("show")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Also draw power over time to a PNG.")
def show_command(file: str, plot: str | None) -> None:
    """Summarize a trace: per-channel energy, average and peak power, idle baseline and net energy, sampler
    quality."""
    trace = open_trace(file)
    if plot:
        _check_matplotlib()  # before printing anything: the summary must not come with a failure after it
    click.echo(render_summary(trace))
    if plot:
        plot_trace(read_trace(file), Path(plot))
        click.echo(f"plot written to {plot}", err=True)
