"""The report's telemetry: per run, utilization, SM clock, temperature and power limit over time beside power with
throttle intervals shaded, and a table of mean/max temperature, time throttled, mean utilization and energy per
GPU-busy second over the measured span. Runs recorded without telemetry (telemetry.arrow absent) have neither."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from fastmeter.analysis.telemetry_summary import TelemetryAccumulator
from fastmeter.analysis.trace_summary import channel_columns
from fastmeter.report.tables import Row, fmt
from fastmeter.telemetry import channels_with, read_telemetry, series_of, throttle_intervals

if TYPE_CHECKING:
    import pyarrow as pa
    from matplotlib.figure import Figure

    from fastmeter.report.load import Report, Run

# Panels under the power panel: (metric, axis label).
PANELS = (
    ("gpu_util_pct", "utilization (%)"),
    ("sm_clock_mhz", "SM clock (MHz)"),
    ("gpu_temp_c", "temperature (C)"),
    ("power_limit_w", "power limit (W)"),
)


def run_telemetry(run: Run) -> pa.Table | None:
    path = run.path / "telemetry.arrow"
    return read_telemetry(path)[0] if path.is_file() else None


def _span(run: Run) -> tuple[int, int]:
    span = run.meta.get("span_ns") or []
    return (int(span[0]), int(span[1])) if len(span) == 2 and span[1] > span[0] else (0, 2**62)


def telemetry_rows(report: Report) -> tuple[Row, list[Row]]:
    """One row per run and GPU over the run's measured span (empty when no run has telemetry)."""
    header = [
        "run",
        "GPU",
        "mean util %",
        "GPU-busy s",
        "mean temp C",
        "max temp C",
        "throttled s",
        "mean SM MHz",
        "power limit W",
        "J / GPU-busy s",
    ]
    rows: list[Row] = []
    for run in report.runs:
        table = run_telemetry(run)
        if table is None:
            continue
        acc = TelemetryAccumulator(*_span(run))
        acc.add(table)
        for g in acc.gpus(run.meta.get("energy_by_channel_j") or {}):
            same = g.power_limit_w_min == g.power_limit_w_max or math.isnan(g.power_limit_w_min)
            limit = fmt(g.power_limit_w_min, ".0f") if same else f"{g.power_limit_w_min:.0f}-{g.power_limit_w_max:.0f}"
            rows.append(
                [
                    run.label,
                    g.channel,
                    fmt(g.mean_util_pct, ".1f"),
                    fmt(g.busy_s, ".2f"),
                    fmt(g.mean_temp_c, ".1f"),
                    fmt(g.max_temp_c, ".0f"),
                    fmt(g.throttled_s, ".2f"),
                    fmt(g.mean_sm_clock_mhz, ".0f"),
                    limit,
                    fmt(g.j_per_busy_s, ".1f"),
                ]
            )
    return header, rows


def telemetry_figure(run: Run) -> Figure | None:
    """Power, then each panel's metric per GPU, one shared time axis; throttle intervals shaded in every panel."""
    from fastmeter.report.figures import _figure, power_series  # figures.py lists this figure: import it late

    table = run_telemetry(run)
    if table is None:
        return None
    gpus = channels_with(table, "gpu_util_pct") or channels_with(table, "sm_clock_mhz")
    panels = [(m, label) for m, label in PANELS if channels_with(table, m)]
    if not gpus or not panels:
        return None
    fig, _ = _figure(10, 1.6 * (len(panels) + 1))
    fig.clear()  # one column of panels sharing the time axis instead of _figure's single row
    axes = fig.subplots(len(panels) + 1, 1, sharex=True)
    samples = run.trace.table
    t0 = int(samples.column("t_ns").to_numpy().min()) if samples.num_rows else 0
    for i, name in enumerate(run.trace.channels):
        if name in gpus:
            t, p = power_series(*channel_columns(samples, name))
            axes[0].plot((t - t0) * 1e-9, p, color=f"C{i}", linewidth=0.8, label=f"{name}")
    axes[0].set_ylabel("power (W)")
    for ax, (metric, label) in zip(axes[1:], panels):
        for i, ch in enumerate(gpus):
            t, v = series_of(table, ch, metric)
            ax.step((t - t0) * 1e-9, v, where="post", color=f"C{i}", linewidth=0.9, label=ch)
        ax.set_ylabel(label, fontsize="small")
    shaded = False
    for iv in throttle_intervals(table):
        for ax in axes:
            ax.axvspan(
                (iv.start_ns - t0) * 1e-9,
                (iv.stop_ns - t0) * 1e-9,
                color="tab:red",
                alpha=0.15,
                label=None if shaded else "throttled",
            )
        shaded = True
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time since first sample (s)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", fontsize="small", ncols=max(1, len(handles)), frameon=False)
    return fig
