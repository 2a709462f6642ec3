"""The accuracy sweep's figure: window error and bound tightness against the power sensor's phase (matplotlib,
drawn off-screen on a Figure object, never pyplot's global state)."""

from __future__ import annotations

from pathlib import Path


def draw(table: list[dict], path: Path) -> str:
    """Writes the PNG; returns "" or, without matplotlib, why it was not drawn."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return "the figure needs matplotlib: pip install 'fastmeter[plot]'"
    bursty = [t for t in table if t["load"] == "bursty" and t["phase_ms"] is not None]
    lengths = sorted({t["length_s"] for t in bursty})
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    err_ax, bound_ax = fig.subplots(1, 2)
    for i, length_s in enumerate(lengths):
        color = f"C{i}"
        rows = sorted((t for t in bursty if t["length_s"] == length_s), key=lambda t: t["phase_ms"])
        x = [t["phase_ms"] for t in rows]
        label = f"{length_s * 1e3:g} ms" if length_s < 1 else f"{length_s:g} s"
        med, lo, hi = zip(*(t["fastmeter_median_pct"] for t in rows))
        err_ax.errorbar(
            x,
            med,
            yerr=[[m - a for m, a in zip(med, lo)], [b - m for m, b in zip(med, hi)]],
            color=color,
            marker="o",
            capsize=3,
            label=f"fastmeter, {label}",
        )
        zeus = [t["zeus_median_pct"][0] for t in rows]
        if any(z is not None and z == z for z in zeus):
            err_ax.plot(x, zeus, color=color, linestyle="--", marker="x", label=f"Zeus, {label}")
        bound_ax.plot(x, [t["bound_over_error_median"][0] for t in rows], color=color, marker="o", label=label)
    err_ax.set(
        yscale="log",
        xlabel="power refresh, ms after the counter's refresh",
        ylabel="median |window error|, %",
        title="Window error vs power phase (100 ms counter, 25 ms power window)",
    )
    err_ax.legend(fontsize=7, ncol=2)
    bound_ax.set(
        yscale="log",
        xlabel="power refresh, ms after the counter's refresh",
        ylabel="median bound / |true error|",
        title="fastmeter's error bound over its actual error",
    )
    bound_ax.legend(fontsize=7)
    for ax in (err_ax, bound_ax):
        ax.grid(True, which="both", alpha=0.3)
    fig.savefig(path, dpi=110)
    return ""
