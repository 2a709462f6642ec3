"""Per-channel figures of a trace: energy, average and peak power, idle baseline and net energy."""

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


def summarize_channels(
    table: pa.Table, channels: list[str], idle_power_w: dict[str, float] | None = None
) -> tuple[float, list[ChannelSummary]]:
    """(duration_s, per-channel summaries) over the whole trace."""
    idle_power_w = idle_power_w or {}
    t_all = table.column("t_ns").to_numpy()
    duration_s = float(t_all.max() - t_all.min()) * 1e-9 if len(t_all) > 1 else 0.0
    out = []
    for name in channels:
        t, e, p = channel_columns(table, name)
        if len(t) < 2:
            out.append(ChannelSummary(name, 0.0, math.nan, math.nan, idle_power_w.get(name), None))
            continue
        energy = float(e[-1] - e[0])
        span_s = float(t[-1] - t[0]) * 1e-9
        avg = energy / span_s if span_s > 0 else math.nan
        finite = p[np.isfinite(p)]
        if len(finite):
            peak = float(finite.max())
        else:  # no power readings: the steepest step of the energy curve between polls
            dt = np.diff(t) * 1e-9
            peak = float(np.max(np.diff(e)[dt > 0] / dt[dt > 0])) if np.any(dt > 0) else math.nan
        idle = idle_power_w.get(name)
        net = energy - idle * span_s if idle is not None else None
        out.append(ChannelSummary(name, energy, avg, peak, idle, net))
    return duration_s, out
