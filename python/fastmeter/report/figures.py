"""The report's figures (matplotlib, drawn off-screen: Figure objects, never pyplot's global state).

Per run: power over time with requests in flight, and per-request energy (distribution, J/token against output
length, prefill against decode). Per group of runs (a sweep, or several runs given together): throughput against
power and J/token against tail latency, with the SLO and the best operating point marked.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fastmeter.analysis.trace_summary import channel_columns
from fastmeter.errors import ConfigError
from fastmeter.report.load import Report, Run, Sweep, in_flight
from fastmeter.report.tables import sweep_title
from fastmeter.report.telemetry import telemetry_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# A power trace is drawn with at most this many points per channel: enough for a 10-inch figure at 120 dpi.
MAX_POINTS = 2000
DPI = 110


@dataclass
class FigureOut:
    name: str  # file stem, unique in the report
    title: str
    figure: Figure
    run: str | None = None  # the run's label for a per-run figure; None for a comparison of runs


def _figure(width_in: float, height_in: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("report figures need matplotlib: pip install 'fastmeter[plot]'") from None
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    return fig, list(np.atleast_1d(fig.subplots(1, ncols)))


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def power_series(t_ns: np.ndarray, energy_j: np.ndarray, power_w: np.ndarray,
                 max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(t_ns, power_w) to draw: the sensor's power readings when it has them (bin means when there are more than
    `max_points`), otherwise the slope of the cumulative energy between bin edges."""
    n = len(t_ns)
    if n < 2:
        return t_ns[:0], power_w[:0]
    finite = np.isfinite(power_w)
    if finite.all():
        if n <= max_points:
            return t_ns, power_w
        edges = np.linspace(0, n, max_points + 1).astype(np.int64)
        sums = np.add.reduceat(power_w, edges[:-1])
        return t_ns[edges[:-1]], sums / np.diff(edges)
    idx = np.unique(np.linspace(0, n - 1, min(n, max_points + 1)).astype(np.int64))
    dt_s = np.diff(t_ns[idx]) * 1e-9
    return t_ns[idx[:-1]], np.diff(energy_j[idx]) / np.where(dt_s > 0, dt_s, np.nan)


def power_timeline(run: Run) -> Figure:
    fig, (ax,) = _figure(10, 3.6)
    table = run.trace.table
    t0 = int(table.column("t_ns").to_numpy().min()) if table.num_rows else 0
    idle = run.meta.get("idle_baseline_w") or {}
    for i, name in enumerate(run.trace.channels):
        t, p = power_series(*channel_columns(table, name))
        color = f"C{i}"
        ax.plot((t - t0) * 1e-9, p, color=color, linewidth=0.9, label=f"{name} power")
        if idle.get(name) is not None:
            ax.axhline(idle[name], color=color, linestyle="--", linewidth=1,
                       label=f"{name} idle baseline {idle[name]:.1f} W")
    span = run.meta.get("span_ns") or []
    if len(span) == 2 and span[1] > span[0]:
        ax.axvspan((span[0] - t0) * 1e-9, (span[1] - t0) * 1e-9, color="0.5", alpha=0.08, label="measured span")
    ax.set_xlabel("time since first sample (s)")
    ax.set_ylabel("power (W)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if run.requests.num_rows:
        tq, n = in_flight(run.requests, span[1] if len(span) == 2 else t0)
        twin = ax.twinx()
        twin.step((tq - t0) * 1e-9, n, where="post", color="0.25", linewidth=0.8, alpha=0.7,
                  label="requests in flight")
        twin.set_ylabel("requests in flight")
        twin.set_ylim(0, max(1, int(n.max(initial=0))) * 1.6)  # headroom: the steps stay below the power lines
        twin.yaxis.get_major_locator().set_params(integer=True)
        h2, l2 = twin.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    fig.legend(handles, labels, loc="outside lower center", fontsize="small", ncols=len(handles), frameon=False)
    return fig


def _column(table: Any, name: str) -> np.ndarray:
    return table.column(name).to_numpy(zero_copy_only=False).astype(float)


def request_energy(run: Run) -> Figure:
    """Three panels: energy per request, J/token against output length, prefill and decode energy per request."""
    fig, (hist, scatter, bars) = _figure(12, 3.4, ncols=3)
    req = run.measured_requests()
    energy = _column(req, "energy_j")
    tokens = _column(req, "completion_tokens")
    ok = np.isfinite(energy)
    hist.hist(energy[ok], bins=min(40, max(5, int(math.sqrt(ok.sum())))), color="C0", edgecolor="white")
    hist.set_xlabel("energy per request (J)")
    hist.set_ylabel("requests")
    hist.yaxis.get_major_locator().set_params(integer=True)
    hist.set_title("distribution of per-request energy", fontsize="medium")

    per_token = ok & (tokens > 0)
    scatter.scatter(tokens[per_token], energy[per_token] / tokens[per_token], s=14, color="C1", alpha=0.8)
    scatter.set_xlabel("output tokens (completion_tokens)")
    scatter.set_ylabel("J / output token")
    scatter.set_title("J/token against output length", fontsize="medium")

    prefill, decode = _column(req, "prefill_energy_j"), _column(req, "decode_energy_j")
    both = np.isfinite(prefill) & np.isfinite(decode)
    x = np.arange(both.sum())
    bars.bar(x, prefill[both], width=1.0, color="C2", label="prefill")
    bars.bar(x, decode[both], width=1.0, bottom=prefill[both], color="C4", label="decode")
    bars.set_xlabel("request (in send order)")
    bars.set_ylabel("energy (J)")
    bars.set_title("prefill and decode energy per request", fontsize="medium")
    bars.set_ylim(0, max(1e-9, float(np.nanmax(prefill[both] + decode[both], initial=0))) * 1.25)  # legend room
    bars.legend(fontsize="small", loc="upper right", ncols=2)
    for ax in (hist, scatter, bars):
        ax.grid(alpha=0.3)
    return fig


def group_figure(group: Sweep) -> Figure:
    """Throughput against power, and J/token against TTFT p99 and ITL p99, one point per run; the best point is
    starred and the SLOs drawn as vertical lines."""
    runs, prefix = group.points, f"{group.label}/" if group.label else ""
    fig, (tp, ttft, itl) = _figure(12, 3.6, ncols=3)

    def values(key: str) -> np.ndarray:
        return np.array([r.summary.get(key) for r in runs], dtype=float)

    jpt = values("energy_per_output_token_j")
    slo = group.slo
    panels = ((tp, values("avg_power_w"), values("output_tokens_per_s"), "average power (W)", "output tokens / s",
               None),
              (ttft, values("ttft_ms_p99"), jpt, "TTFT p99 (ms)", "J / output token", slo.get("slo_ttft_p99_ms")),
              (itl, values("itl_ms_p99"), jpt, "ITL p99 (ms)", "J / output token", slo.get("slo_itl_p99_ms")))
    for ax, x, y, xlabel, ylabel, limit in panels:
        ax.plot(x, y, marker="o", color="C0", linewidth=1)
        for r, xi, yi in zip(runs, x, y):
            if math.isfinite(xi) and math.isfinite(yi):
                ax.annotate(r.label.removeprefix(prefix), (xi, yi), textcoords="offset points", xytext=(5, 5),
                            fontsize="x-small")
            if r.label == group.best:
                ax.scatter([xi], [yi], marker="*", s=220, color="C3", zorder=3, label="best under SLO")
        if limit is not None:
            ax.axvline(limit, color="C3", linestyle="--", linewidth=1, label=f"SLO {limit:g} ms")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.margins(x=0.2, y=0.15)  # room for the point labels
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    tp.set_title("throughput against power", fontsize="medium")
    ttft.set_title("J/token against TTFT p99", fontsize="medium")
    itl.set_title("J/token against ITL p99", fontsize="medium")
    return fig


def _stem(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def _unique(stem: str, taken: set[str]) -> str:
    """`stem`, or `stem-2`, `stem-3`, ... when taken: runs "a/b" and "a_b" have the same file-safe name."""
    candidate, i = stem, 1
    while candidate in taken:
        i += 1
        candidate = f"{stem}-{i}"
    taken.add(candidate)
    return candidate


def comparison_groups(report: Report) -> list[Sweep]:
    """The groups the overview compares: each sweep directory, and the loose runs when there are two or more
    (as a group with an empty label: no best point, no SLO)."""
    groups = list(report.sweeps)
    if len(report.loose) >= 2:
        groups.append(Sweep(report.loose[0].path.parent, "", report.loose, None))
    return groups


def build_figures(report: Report) -> list[FigureOut]:
    """Every figure of the report, groups first (the overview), then per run."""
    out: list[FigureOut] = []
    for g in comparison_groups(report):
        name, title = (f"sweep-{_stem(g.label)}", sweep_title(g.label)) if g.label else ("runs", "Runs compared")
        out.append(FigureOut(name, title, group_figure(g)))
    taken: set[str] = set()
    for run in report.runs:
        stem = _unique(_stem(run.label), taken)
        out.append(FigureOut(f"{stem}-power", f"{run.label}: power and requests in flight", power_timeline(run),
                             run.label))
        out.append(FigureOut(f"{stem}-requests", f"{run.label}: per-request energy", request_energy(run), run.label))
        telemetry = telemetry_figure(run)
        if telemetry is not None:
            out.append(FigureOut(f"{stem}-telemetry", f"{run.label}: GPU telemetry beside power (throttling shaded)",
                                 telemetry, run.label))
    return out
