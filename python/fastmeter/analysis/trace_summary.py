"""Per-channel figures of a trace: energy, average and peak power, idle baseline and net energy.

Average and peak power both come from the channel's cumulative energy curve, so the peak is never below the
average: a power reading (e.g. NVML's 1-second average) describes another window than the span the energy covers,
and with a few samples the two disagree (a 3-sample trace showed average W > peak W)."""

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


@dataclass
class _Running:
    """One channel's figures so far, as batches go by (rows are in poll order, so in time order per channel).
    Same knots as `peak_power_w`: the first sample, each sample where the energy changed, the last sample."""

    n: int = 0
    first_t: int = 0
    first_e: float = 0.0
    last_t: int = 0
    last_e: float = 0.0
    knot_t: int = 0
    knot_e: float = 0.0
    peak_w: float = -math.inf

    def add(self, t: np.ndarray, e: np.ndarray) -> None:
        if not len(t):
            return
        if self.n:  # compare the batch's first sample with the previous batch's last
            t_ext, e_ext = np.r_[self.last_t, t], np.r_[self.last_e, e]
        else:
            self.first_t, self.first_e = self.knot_t, self.knot_e = int(t[0]), float(e[0])
            t_ext, e_ext = t, e
        changed = np.flatnonzero(np.diff(e_ext) != 0) + 1
        self._slopes(np.r_[self.knot_t, t_ext[changed]], np.r_[self.knot_e, e_ext[changed]])
        if len(changed):
            self.knot_t, self.knot_e = int(t_ext[changed[-1]]), float(e_ext[changed[-1]])
        self.n += len(t)
        self.last_t, self.last_e = int(t[-1]), float(e[-1])

    def _slopes(self, kt: np.ndarray, ke: np.ndarray) -> None:
        dt_s = np.diff(kt) * 1e-9
        ok = dt_s > 0
        if ok.any():
            self.peak_w = max(self.peak_w, float(np.max(np.diff(ke)[ok] / dt_s[ok])))

    def peak(self) -> float:
        self._slopes(np.array([self.knot_t, self.last_t]), np.array([self.knot_e, self.last_e]))  # the last knot
        return self.peak_w if self.peak_w > -math.inf else math.nan


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
        for name, r in running.items():
            sel = names == name
            if sel.any():
                r.add(t_all[sel], e_all[sel])
    duration_s = float(t_max - t_min) * 1e-9 if t_min is not None and rows > 1 else 0.0
    out = []
    for name, r in running.items():
        idle = idle_power_w.get(name)
        if r.n < 2:
            out.append(ChannelSummary(name, math.nan, math.nan, math.nan, idle, None))
            continue
        energy = r.last_e - r.first_e
        span_s = (r.last_t - r.first_t) * 1e-9
        avg = energy / span_s if span_s > 0 else math.nan
        net = energy - idle * span_s if idle is not None else None
        out.append(ChannelSummary(name, energy, avg, r.peak(), idle, net))
    return duration_s, rows, out


def summarize_channels(
    table: pa.Table, channels: list[str], idle_power_w: dict[str, float] | None = None
) -> tuple[float, list[ChannelSummary]]:
    """(duration_s, per-channel summaries) over the whole trace."""
    duration_s, _, rows = summarize_batches(table.to_batches(), channels, idle_power_w)
    return duration_s, rows
