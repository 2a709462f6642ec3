"""Per-channel figures of a trace: energy, average and peak power, idle baseline and net energy.

Average and peak power both come from the channel's cumulative energy curve, so the peak is never below the
average: a power reading (e.g. NVML's 1-second average) describes another window than the span the energy covers,
and with a few samples the two disagree (a 3-sample trace showed average W > peak W)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class ChannelSummary:
    channel: str
    energy_j: float
    avg_power_w: float
    peak_power_w: float
    idle_power_w: float | None
    net_energy_j: float | None  # energy_j - idle_power_w x duration_s


def channel_columns(table: pa.Table, channel: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """t_ns, cumulative energy_j, power_w (NaN = none) of one channel, in time order."""
    ch = pc.cast(table.column("channel"), pa.string())
    sub = table.filter(pc.equal(ch, channel))
    t = sub.column("t_ns").to_numpy()
    e = sub.column("energy_j").to_numpy()
    p = sub.column("power_w").to_numpy(zero_copy_only=False).astype(float)
    order = np.argsort(t, kind="stable")
    return t[order], e[order], p[order]


def peak_power_w(t_ns: np.ndarray, energy_j: np.ndarray) -> float:
    """The highest average power between successive updates of the energy curve. Knots: the first sample, each
    sample where the cumulative energy changed (a counter that refreshes slower than we poll repeats its value in
    between), and the last sample. The whole-span average is the time-weighted mean of these slopes, so it never
    exceeds their maximum."""
    changed = np.flatnonzero(np.diff(energy_j) != 0) + 1
    knots = np.unique(np.concatenate([[0], changed, [len(t_ns) - 1]]))
    dt_s = np.diff(t_ns[knots]) * 1e-9
    de_j = np.diff(energy_j[knots])
    ok = dt_s > 0
    return float(np.max(de_j[ok] / dt_s[ok])) if ok.any() else math.nan


# The sampler's lateness histogram (csrc/fastmeter/stats.h, LatenessHistogram::kBins) has 1 µs bins up to this
# many µs, the top bin holding every later poll: a quantile reported there only says "at least the top bin".
JITTER_HISTOGRAM_TOP_US = 20000


def jitter_text(us: float | None, missing: str = "-") -> str:
    """A lateness quantile in µs as text: "≥ 19999" when it fell into the histogram's open-ended top bin."""
    if us is None or not math.isfinite(us):
        return missing
    if us >= JITTER_HISTOGRAM_TOP_US:
        return f"≥ {JITTER_HISTOGRAM_TOP_US - 1}"
    return f"{us:.0f}"


def summarize_channels(
    table: pa.Table, channels: list[str], idle_power_w: dict[str, float] | None = None
) -> tuple[float, list[ChannelSummary]]:
    """(duration_s, per-channel summaries) over the whole trace."""
    idle_power_w = idle_power_w or {}
    t_all = table.column("t_ns").to_numpy()
    duration_s = float(t_all.max() - t_all.min()) * 1e-9 if len(t_all) > 1 else 0.0
    out = []
    for name in channels:
        t, e, _ = channel_columns(table, name)
        if len(t) < 2:
            out.append(ChannelSummary(name, math.nan, math.nan, math.nan, idle_power_w.get(name), None))
            continue
        energy = float(e[-1] - e[0])
        span_s = float(t[-1] - t[0]) * 1e-9
        avg = energy / span_s if span_s > 0 else math.nan
        peak = peak_power_w(t, e)
        idle = idle_power_w.get(name)
        net = energy - idle * span_s if idle is not None else None
        out.append(ChannelSummary(name, energy, avg, peak, idle, net))
    return duration_s, out
