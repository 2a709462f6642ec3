"""Per-channel figures of a trace: energy, average and peak power, idle baseline and net energy."""

from __future__ import annotations

import math
from collections.abc import Iterable
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


@dataclass
class _Running:
    """One channel's figures so far, as batches go by (rows are in poll order, so in time order per channel)."""

    n: int = 0
    first_t: int = 0
    first_e: float = 0.0
    last_t: int = 0
    last_e: float = 0.0
    peak_power_w: float = -math.inf  # highest power reading
    peak_slope_w: float = -math.inf  # steepest step of the energy curve, for channels without power readings

    def add(self, t: np.ndarray, e: np.ndarray, p: np.ndarray) -> None:
        if not len(t):
            return
        if self.n:  # the step from the previous batch's last sample
            t, e, p = np.r_[self.last_t, t], np.r_[self.last_e, e], np.r_[math.nan, p]
        else:
            self.first_t, self.first_e = int(t[0]), float(e[0])
        finite = p[np.isfinite(p)]
        if len(finite):
            self.peak_power_w = max(self.peak_power_w, float(finite.max()))
        dt = np.diff(t) * 1e-9
        if np.any(dt > 0):
            self.peak_slope_w = max(self.peak_slope_w, float(np.max(np.diff(e)[dt > 0] / dt[dt > 0])))
        self.n += len(t) - (1 if self.n else 0)
        self.last_t, self.last_e = int(t[-1]), float(e[-1])


def summarize_batches(
    batches: Iterable[pa.RecordBatch], channels: list[str], idle_power_w: dict[str, float] | None = None
) -> tuple[float, int, list[ChannelSummary]]:
    """(duration_s, rows, per-channel summaries) over a trace read batch by batch: memory stays bounded by one
    batch whatever the trace's length."""
    idle_power_w = idle_power_w or {}
    running = {name: _Running() for name in channels}
    t_min, t_max, rows = None, None, 0
    for batch in batches:
        if not batch.num_rows:
            continue
        rows += batch.num_rows
        t_all = batch.column("t_ns").to_numpy()
        t_min = int(t_all.min()) if t_min is None else min(t_min, int(t_all.min()))
        t_max = int(t_all.max()) if t_max is None else max(t_max, int(t_all.max()))
        names = pc.cast(batch.column("channel"), pa.string()).to_numpy(zero_copy_only=False)
        e_all = batch.column("energy_j").to_numpy()
        p_all = batch.column("power_w").to_numpy(zero_copy_only=False).astype(float)
        for name, r in running.items():
            sel = names == name
            if sel.any():
                r.add(t_all[sel], e_all[sel], p_all[sel])
    duration_s = float(t_max - t_min) * 1e-9 if t_min is not None and rows > 1 else 0.0
    out = []
    for name, r in running.items():
        idle = idle_power_w.get(name)
        if r.n < 2:
            out.append(ChannelSummary(name, 0.0, math.nan, math.nan, idle, None))
            continue
        energy = r.last_e - r.first_e
        span_s = (r.last_t - r.first_t) * 1e-9
        avg = energy / span_s if span_s > 0 else math.nan
        peak = r.peak_power_w if r.peak_power_w > -math.inf else r.peak_slope_w
        net = energy - idle * span_s if idle is not None else None
        out.append(ChannelSummary(name, energy, avg, peak if peak > -math.inf else math.nan, idle, net))
    return duration_s, rows, out


def summarize_channels(
    table: pa.Table, channels: list[str], idle_power_w: dict[str, float] | None = None
) -> tuple[float, list[ChannelSummary]]:
    """(duration_s, per-channel summaries) over the whole trace."""
    duration_s, _, rows = summarize_batches(table.to_batches(), channels, idle_power_w)
    return duration_s, rows
