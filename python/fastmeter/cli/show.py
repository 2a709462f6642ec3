"""`fastmeter show`: what a trace says — energy, power, idle baseline, and how well it was sampled."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from fastmeter.analysis.telemetry_summary import TelemetryAccumulator
from fastmeter.analysis.trace_summary import channel_columns, jitter_text, summarize_batches
from fastmeter.errors import ConfigError
from fastmeter.io.read import Trace, TraceBatches, _base_of_part, open_trace, read_trace
from fastmeter.telemetry import open_telemetry, telemetry_path_for
from fastmeter.validity import Validity


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def validity_line(meta: dict[str, Any]) -> str:
    """The trace's verdict first: a synthetic or invalid trace must not read like a measurement."""
    if "validity" not in meta:
        return "validity      UNKNOWN: not recorded (an unfinished trace, or one written before fastmeter judged them)"
    v = Validity.from_dict(meta["validity"])
    return "\n".join([f"validity      {v.verdict.value.upper()}", *(f"  - {r.message} [{r.code}]" for r in v.reasons)])


def _exit_text(trace: Trace | TraceBatches) -> str:
    code = trace.metadata.get("exit_code")
    if code is not None:
        return f"exit code {code}"
    if not trace.complete:
        return "exit code not recorded (the trace was cut short)"
    signum = trace.metadata.get("stopped_by_signal")
    if signum is not None:
        return f"exit code not recorded (the trace was stopped by signal {signum})"
    return "exit code not recorded"


def render_summary(trace: Trace | TraceBatches) -> str:
    """The summary, read batch by batch: a trace of any length is shown in bounded memory."""
    meta = trace.metadata
    idle = meta.get("idle_baseline_w") or {}
    duration_s, n_rows, rows = summarize_batches(trace.batches(), trace.channels, idle)
    lines = [validity_line(meta), f"duration      {duration_s:.3f} s   samples {n_rows}"]
    if not trace.complete:
        lines.append("status        INCOMPLETE: the recorder stopped before finishing; samples up to its last flush")
    if meta.get("command"):
        lines.append(f"command       {' '.join(meta['command'])}   {_exit_text(trace)}")
    lines.append("")
    lines.append(f"{'channel':<16}{'energy J':>12}{'avg W':>10}{'peak W':>10}{'idle W':>10}{'net J':>12}")
    for r in rows:
        lines.append(
            f"{r.channel:<16}{_fmt(r.energy_j, '.3f'):>12}{_fmt(r.avg_power_w, '.2f'):>10}"
            f"{_fmt(r.peak_power_w, '.2f'):>10}{_fmt(r.idle_power_w, '.2f'):>10}{_fmt(r.net_energy_j, '.3f'):>12}"
        )
    stats = meta.get("sampler_stats")
    if stats:
        period_us = (meta.get("sampler") or {}).get("period_us")
        lines.append("")
        lines.append(
            f"sampler       {_fmt(stats.get('rate_hz'), '.0f')} Hz (period {_fmt(period_us, 'd')} us)  jitter p50 "
            f"{jitter_text(stats.get('jitter_p50_us'))} us  p99 {jitter_text(stats.get('jitter_p99_us'))} us  max "
            f"{_fmt(stats.get('jitter_max_us'), '.0f')} us  missed {_fmt(stats.get('missed'), 'd')}  dropped "
            f"{_fmt(stats.get('dropped'), 'd')}"
        )
        if "rss_bytes" in stats:  # the sampler's own long-run health: memory and query latency
            queries = stats.get("queries") or 0
            latency = (f"; {queries} queries p50 {_fmt(stats.get('query_p50_us'), '.0f')} us  p99 "
                       f"{_fmt(stats.get('query_p99_us'), '.0f')} us") if queries else ""
            lines.append(
                f"  memory      RSS {_fmt(_mib(stats.get('rss_bytes')), '.0f')} MiB at the end, "
                f"{_fmt(stats.get('samples_kept'), 'd')} raw samples and {_fmt(stats.get('knots'), 'd')} knots in RAM"
                + _history(stats) + latency
            )
        for name, period in (stats.get("update_period_s") or {}).items():
            lines.append(f"  {name:<14}counter update period {_fmt(period and period * 1e3, '.2f')} ms")
        for name, err in (stats.get("errors") or {}).items():
            lines.append(f"  {name:<14}FAILED: {err}")
    lines += telemetry_lines(trace, {r.channel: r.energy_j for r in rows})
    rec = meta.get("recorder")
    if isinstance(rec, dict) and rec.get("flushes") is not None:
        lines.append(
            f"recorder      {rec['flushes']} flushes every {_fmt(rec.get('flush_interval_s'), '.2f')} s, longest "
            f"{_fmt(rec.get('flush_max_ms'), '.1f')} ms; peak RSS {_fmt(rec.get('peak_rss_mib'), '.0f')} MiB"
        )
    return "\n".join(lines)


def _history(stats: dict[str, Any]) -> str:
    disk, ram = stats.get("history_disk_bytes"), stats.get("history_ram_bytes")
    if disk is None:  # a trace from before the history file
        return ""
    where = f", history {_fmt(_mib(disk), '.1f')} MiB on disk"
    if ram:
        why = stats.get("history_error") or 'history_dir=""'
        where += f" + {_fmt(_mib(ram), '.1f')} MiB in RAM ({why})"
    return where


def _mib(n: Any) -> float | None:
    return n / 2**20 if isinstance(n, (int, float)) else None


def _matplotlib() -> Any:
    """pyplot on the off-screen backend; checked before anything is printed, so --plot fails whole or not at all."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'fastmeter[plot]'") from None
    return plt


def plot_trace(trace: Trace, out: Path) -> None:
    plt = _matplotlib()
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


def _directory_hint(path: Path) -> str:
    if (path / "training.json").is_file():
        return (f"{path} is a training run directory: use `fastmeter show {path / 'samples.arrow'}` for its power "
                "trace; its per-step energy and energy-to-target are in steps.arrow, epochs.arrow and training.json")
    if (path / "samples.arrow").is_file() or (path / "sweep.json").is_file():
        trace = f"`fastmeter show {path / 'samples.arrow'}` for its power trace, or " if (
            path / "samples.arrow").is_file() else ""
        return f"{path} is a run directory of `fastmeter bench`: use {trace}`fastmeter report {path}` for the run"
    return f"{path} is a directory; `fastmeter show` reads one trace file (.arrow or .parquet from `fastmeter trace`)"


@click.command("show")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Also draw power over time to a PNG.")
def show_command(file: Path, plot: str | None) -> None:
    """Summarize a trace (FILE: written by `fastmeter trace`, or a run directory's samples.arrow): per-channel
    energy, average and peak power, idle baseline and net energy, sampler quality."""
    if file.is_dir():
        raise ConfigError(_directory_hint(file))
    if plot:
        _matplotlib()
    click.echo(render_summary(open_trace(file)))
    if plot:  # the whole table, for the figure only
        plot_trace(read_trace(file), Path(plot))
        click.echo(f"plot written to {plot}", err=True)


# --- telemetry beside the trace (docs/format.md, "Telemetry files") ---
def telemetry_file_of(path: Path) -> Path | None:
    """The telemetry file recorded with a trace: `telemetry.arrow` beside a run directory's samples.arrow, else
    `<stem>-telemetry<suffix>`; None when there is none."""
    candidates = [path.with_name("telemetry.arrow")] if path.name == "samples.arrow" else []
    candidates.append(telemetry_path_for(path))
    return next((c for c in candidates if c.is_file()), None)


def telemetry_lines(trace: Trace | TraceBatches, energy_j: dict[str, float]) -> list[str]:
    """Per-GPU utilization, temperature, time throttled, clocks, power limit and J per GPU-busy second, read batch
    by batch from the telemetry file recorded with the trace (none for a trace loaded without its paths)."""
    paths = getattr(trace, "paths", None)
    path = telemetry_file_of(_base_of_part(paths[0]) or paths[0]) if paths else None
    if path is None:
        return []
    meta, batches = open_telemetry(path)
    info = meta.get("telemetry") or {}
    acc = TelemetryAccumulator(0, 2**62).add_all(batches)
    lines = ["", f"telemetry     {_fmt(info.get('hz'), 'g')} Hz, {len(info.get('series') or [])} series ({path.name})"]
    for u in info.get("unavailable") or []:
        lines.append(f"  unavailable {u}")
    gpus = acc.gpus(energy_j)
    if gpus:
        lines.append(
            f"{'gpu':<8}{'util %':>8}{'busy s':>9}{'temp C':>8}{'max C':>7}{'throttled s':>13}{'SM MHz':>8}"
            f"{'limit W':>9}{'J/busy s':>10}"
        )
    for g in gpus:
        limit = (_fmt(g.power_limit_w_min, ".0f") if g.power_limit_w_min == g.power_limit_w_max
                 else f"{_fmt(g.power_limit_w_min, '.0f')}-{_fmt(g.power_limit_w_max, '.0f')}")
        lines.append(
            f"{g.channel:<8}{_fmt(g.mean_util_pct, '.1f'):>8}{_fmt(g.busy_s, '.2f'):>9}{_fmt(g.mean_temp_c, '.1f'):>8}"
            f"{_fmt(g.max_temp_c, '.0f'):>7}{_fmt(g.throttled_s, '.3f'):>13}{_fmt(g.mean_sm_clock_mhz, '.0f'):>8}"
            f"{limit:>9}{_fmt(g.j_per_busy_s, '.1f'):>10}"
        )
    return lines

