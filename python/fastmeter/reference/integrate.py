"""Pure-Python twin of csrc/fastmeter/integrate.{h,cpp}: raw readings to joules, and the cumulative-energy curve.

It mirrors the native code operation by operation (same float order), so property tests can demand agreement to
~1e-9. Read the C++ header for the reasoning; the comments here only mark where the two must stay in step.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fastmeter.reference.counters import counter_delta

READ_COUNTER = 1 << 0
READ_POWER = 1 << 1
READ_FAILED = 1 << 2

# NVML instant power (field 186) on A100/H100 is the average of the ~25 ms before the value becomes visible.
NVML_POWER_WINDOW_NS = 25_000_000
# kMaxPendingWindows: power windows one counter interval keeps before they are merged to a common resolution.
MAX_PENDING_WINDOWS = 1024


def _half(d: int) -> int:
    """C++ int64 `d / 2` (truncates toward zero)."""
    return d // 2 if d >= 0 else -((-d) // 2)


def _change_instant(last_ns: int, t_ns: int, last_changed: bool) -> int:
    """When a value first seen at t_ns changed: at t_ns if the previous poll also changed, else mid-gap."""
    return t_ns if last_changed else last_ns + _half(t_ns - last_ns)


@dataclass
class ChannelAccumulator:
    """Cumulative joules of one channel, one reading per poll (twin of fastmeter::ChannelAccumulator)."""

    unit_j: float
    range_: int
    has_counter: bool
    _have_counter: bool = False
    _last_counter: int = 0
    _have_power: bool = False
    _last_power_t_ns: int = 0
    _last_power_w: float = 0.0
    energy_j: float = 0.0

    def push(self, t_ns: int, counter_raw: int, power_w: float, flags: int) -> tuple[float, bool, bool]:
        """Returns (cumulative energy_j, energy came from the counter at this poll, the counter changed)."""
        failed = (flags & READ_FAILED) != 0
        counter_ok = (flags & READ_COUNTER) != 0 and not failed
        power_ok = (flags & READ_POWER) != 0 and math.isfinite(power_w) and not failed
        if self.has_counter:
            changed = False
            if counter_ok:
                if self._have_counter:
                    d = counter_delta(self._last_counter, counter_raw, self.range_)
                    changed = d != 0
                    self.energy_j += float(d) * self.unit_j
                self._last_counter = counter_raw
                self._have_counter = True
            return self.energy_j, counter_ok, changed
        if power_ok:
            if self._have_power:
                dt_s = float(t_ns - self._last_power_t_ns) * 1e-9
                self.energy_j += 0.5 * (self._last_power_w + power_w) * dt_s
            self._last_power_w = power_w
            self._last_power_t_ns = t_ns
            self._have_power = True
        return self.energy_j, False, False


def accumulate(
    t_ns: Sequence[int],
    counter_raw: Sequence[int],
    power_w: Sequence[float],
    flags: Sequence[int],
    unit_j: float,
    range_: int,
    has_counter: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs a ChannelAccumulator over a polled stream: (energy_j, counter, changed) arrays."""
    acc = ChannelAccumulator(unit_j, int(range_), has_counter)
    n = len(t_ns)
    energy_j = np.empty(n)
    counter = np.zeros(n, dtype=bool)
    changed = np.zeros(n, dtype=bool)
    for i in range(n):
        energy_j[i], counter[i], changed[i] = acc.push(
            int(t_ns[i]), int(counter_raw[i]), float(power_w[i]), int(flags[i])
        )
    return energy_j, counter, changed


@dataclass
class KnotBuilder:
    """Twin of fastmeter::KnotBuilder; knots are (t_ns, energy_j, power_w) lists kept in three parallel lists."""

    power_window_ns: int = NVML_POWER_WINDOW_NS
    max_pending_windows: int = MAX_PENDING_WINDOWS
    t_ns: list[int] = field(default_factory=list)
    energy_j: list[float] = field(default_factory=list)
    power_w: list[float] = field(default_factory=list)
    first_poll_ns: int = 0
    last_poll_ns: int = 0
    _any: bool = False
    _counter_mode: bool = False
    _have_valid: bool = False
    _last_valid_ns: int = 0
    _valid_changed: bool = False
    _power_changed: bool = False
    _have_power: bool = False
    _last_power_w: float = 0.0
    _last_power_ns: int = 0
    _pending: list[tuple[int, int, float]] = field(default_factory=list)
    _merge_ns: int = 0
    _have_update: bool = False
    _last_update_ns: int = 0
    _update_intervals_ns: list[int] = field(default_factory=list)

    def push(self, t_ns: int, energy_j: float, power_w: float, counter: bool, changed: bool) -> None:
        if not self._any:
            self.first_poll_ns = t_ns
        power_ok = math.isfinite(power_w)
        power_changed = power_ok and self._have_power and power_w != self._last_power_w
        s_ns = _change_instant(self._last_power_ns, t_ns, self._power_changed) if power_changed else 0
        if counter and not self._counter_mode:
            self._counter_mode = True
            self.t_ns.clear()
            self.energy_j.clear()
            self.power_w.clear()
            self._have_update = False
            self._update_intervals_ns.clear()
        if self._counter_mode:
            if power_changed and self.power_window_ns > 0:
                self._add_window((s_ns - self.power_window_ns, s_ns, power_w))
            if counter:
                if changed and self._have_valid:
                    # Twin of the first-knot move in KnotBuilder::push (integrate.cpp).
                    if self._valid_changed and len(self.t_ns) == 1:
                        self.t_ns[0] = self._last_valid_ns
                    b_ns = _change_instant(self._last_valid_ns, t_ns, self._valid_changed)
                    self._close(b_ns, energy_j, power_w if power_ok else math.nan)
                self._last_valid_ns = t_ns
                self._have_valid = True
                self._valid_changed = changed
        else:
            if power_changed:
                self._note_update(s_ns)
            self._append(t_ns - _half(self.power_window_ns), energy_j, power_w)
        if power_ok:
            self._power_changed = power_changed
            self._have_power = True
            self._last_power_w = power_w
            self._last_power_ns = t_ns
        self.last_poll_ns = t_ns
        self._any = True

    def _note_update(self, t_ns: int) -> None:
        if self._have_update:
            self._update_intervals_ns.append(t_ns - self._last_update_ns)
        self._last_update_ns = t_ns
        self._have_update = True

    def _add_window(self, w: tuple[int, int, float]) -> None:
        """Twin of KnotBuilder::add_window."""
        pending = self._pending
        if pending:
            lo = max(w[0], pending[-1][1])  # _fuse gives shared time to the earlier window
            if w[1] <= lo:
                return
            w = (lo, w[1], w[2])
            if self._merge_ns > 0 and w[1] - pending[-1][0] <= self._merge_ns:
                pending[-1] = _merged(pending[-1], w)
                return
        pending.append(w)
        if len(pending) <= self.max_pending_windows:
            return
        span_ns = pending[-1][1] - pending[0][0]
        self._merge_ns = max(2 * self._merge_ns, span_ns // (self.max_pending_windows // 4), 1)
        groups = [pending[0]]
        for x in pending[1:]:
            if x[1] - groups[-1][0] <= self._merge_ns:
                groups[-1] = _merged(groups[-1], x)
            else:
                groups.append(x)
        self._pending = groups

    def _close(self, b_ns: int, e_b: float, latest_power_w: float) -> None:
        self._note_update(b_ns)
        pending, self._pending = self._pending, []
        self._merge_ns = 0
        if not self.t_ns:
            self._append(b_ns, e_b, latest_power_w)
            return
        a_ns, e_a = self.t_ns[-1], self.energy_j[-1]
        if b_ns <= a_ns:
            self.energy_j[-1] = e_b
            return
        pieces = _fuse(a_ns, b_ns, e_b - e_a, pending)
        e = e_a
        for k in range(len(pieces) - 1):
            lo, hi, p_w, _ = pieces[k]
            e = min(e + p_w * (float(hi - lo) * 1e-9), e_b)
            self._append(hi, e, _knot_slope(pieces[k], pieces[k + 1]))
        self._append(b_ns, e_b, pieces[-1][2] if pieces[-1][3] else math.nan)

    def _append(self, t_ns: int, energy_j: float, power_w: float) -> None:
        self.t_ns.append(t_ns)
        self.energy_j.append(energy_j)
        self.power_w.append(power_w)

    def observed_update_period_s(self) -> float:
        """Upper median interval between updates (counter change points, or power changes), as the centre of its
        histogram bucket (`bucket_centre_ns`): NaN with < 2 intervals."""
        d = self._update_intervals_ns
        if len(d) < 2:
            return math.nan
        return float(bucket_centre_ns(sorted(d)[len(d) // 2])) * 1e-9


HISTOGRAM_TOP_NS = 2**40


def bucket_centre_ns(v_ns: int) -> int:
    """The value a ~1%-resolution histogram reports for v_ns (csrc/fastmeter/log_histogram.h): exact below 128 ns;
    above, every power of two is split into 64 equal buckets, reported by their lower edge plus half their width;
    2^40 ns and more share the last bucket below 2^40."""
    v = min(max(int(v_ns), 0), HISTOGRAM_TOP_NS - 1)
    if v < 128:
        return v
    width = 1 << (v.bit_length() - 7)
    return v - v % width + width // 2


def decimate_knots(
    t_ns: Sequence[int],
    energy_j: Sequence[float],
    power_w: Sequence[float],
    anchor: Sequence[bool],
    resolution_ns: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The knots kept when a stretch of knots is thinned to resolution_ns (twin of decimate_knots in
    csrc/fastmeter/knot_store.cpp, written from its specification): the first and last knots and the anchors are
    the candidates; from each kept anchor, jump to the farthest anchor at most resolution_ns later, dropping all
    between; when the next anchor is farther than that, keep every knot up to it."""
    n = len(t_ns)
    keep = list(range(n))
    if n > 2:
        anchors = [i for i in range(n) if anchor[i] or i in (0, n - 1)]
        anchor_t = [int(t_ns[i]) for i in anchors]
        keep = [0]
        pos = 0
        while anchors[pos] != n - 1:
            far = bisect.bisect_right(anchor_t, anchor_t[pos] + resolution_ns) - 1
            if far > pos:
                keep.append(anchors[far])
                pos = far
            else:
                keep.extend(range(anchors[pos] + 1, anchors[pos + 1] + 1))
                pos += 1
    return (
        np.asarray([t_ns[i] for i in keep], dtype=np.int64),
        np.asarray([energy_j[i] for i in keep], dtype=np.float64),
        np.asarray([power_w[i] for i in keep], dtype=np.float64),
    )


Piece = tuple[int, int, float, bool]  # lo_ns, hi_ns, power_w, measured (a power reading's window)


def _knot_slope(left: Piece, right: Piece) -> float:
    """Power at the knot between two pieces: a measured neighbour wins over the unseen rest."""
    if left[3] == right[3]:
        return 0.5 * (left[2] + right[2])
    return left[2] if left[3] else right[2]


def _merged(a: tuple[int, int, float], b: tuple[int, int, float]) -> tuple[int, int, float]:
    """Twin of `merged` (integrate.cpp): a and b (b starting at a's end or later) as one window over both spans,
    with their mean power."""
    a_ns = a[1] - a[0]
    b_ns = b[1] - b[0]
    p_w = (a[2] * (float(a_ns) * 1e-9) + b[2] * (float(b_ns) * 1e-9)) / (float(a_ns + b_ns) * 1e-9)
    return (a[0], b[1], p_w)


def _fuse(a_ns: int, b_ns: int, de_j: float, pending: list[tuple[int, int, float]]) -> list[Piece]:
    """Constant-power pieces covering [a_ns, b_ns] that hold exactly de_j (twin of fuse_interval in C++)."""
    span_ns = b_ns - a_ns
    if de_j <= 0.0:
        return [(a_ns, b_ns, 0.0, False)]
    segs: list[tuple[int, int, float]] = []
    prev_end = a_ns
    for lo, hi, p_w in pending:
        lo = max(lo, prev_end)
        hi = min(hi, b_ns)
        if hi > lo:
            segs.append((lo, hi, p_w))
            prev_end = hi
    win_ns = 0
    win_j = 0.0
    for lo, hi, p_w in segs:
        win_ns += hi - lo
        win_j += p_w * (float(hi - lo) * 1e-9)
    free_ns = span_ns - win_ns
    span_s = float(span_ns) * 1e-9
    if win_ns == 0:
        return [(a_ns, b_ns, de_j / span_s, False)]
    free_s = float(free_ns) * 1e-9
    if free_ns * 10 < span_ns:
        # Almost no unseen time: spreading the residual there would make a spike; scale every reading instead.
        p_free = win_j / (float(win_ns) * 1e-9)
        total_j = win_j + p_free * free_s
        scale = de_j / total_j if total_j > 0.0 else math.inf
        if not math.isfinite(scale):
            return [(a_ns, b_ns, de_j / span_s, False)]
    elif de_j - win_j >= 0.0:
        p_free = (de_j - win_j) / free_s
        scale = 1.0
    else:
        p_free = 0.0
        scale = de_j / win_j
    out: list[Piece] = []
    cur = a_ns
    for lo, hi, p_w in segs:
        if lo > cur:
            out.append((cur, lo, p_free * scale, False))
        out.append((lo, hi, p_w * scale, True))
        cur = hi
    if cur < b_ns:
        out.append((cur, b_ns, p_free * scale, False))
    return out


def build_knots(
    t_ns: Sequence[int],
    energy_j: Sequence[float],
    power_w: Sequence[float],
    counter: Sequence[bool],
    changed: Sequence[bool],
    power_window_ns: int = NVML_POWER_WINDOW_NS,
    max_pending_windows: int = MAX_PENDING_WINDOWS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Feeds a stream to a KnotBuilder: (knot_t_ns int64, knot_energy_j, knot_power_w, observed_update_period_s).
    max_pending_windows other than the native one's is for tests (e.g. a curve that never merges)."""
    kb = KnotBuilder(power_window_ns=int(power_window_ns), max_pending_windows=int(max_pending_windows))
    for i in range(len(t_ns)):
        kb.push(int(t_ns[i]), float(energy_j[i]), float(power_w[i]), bool(counter[i]), bool(changed[i]))
    return (
        np.asarray(kb.t_ns, dtype=np.int64),
        np.asarray(kb.energy_j, dtype=np.float64),
        np.asarray(kb.power_w, dtype=np.float64),
        kb.observed_update_period_s(),
    )


def _secant_w(knot_t_ns: Sequence[int], knot_energy_j: Sequence[float], i: int) -> float:
    """Mean power between knots i and i + 1; 0 W when there is no such pair."""
    if i < 0 or i + 1 >= len(knot_t_ns):
        return 0.0
    return (knot_energy_j[i + 1] - knot_energy_j[i]) / (float(knot_t_ns[i + 1] - knot_t_ns[i]) * 1e-9)


def energy_at(
    knot_t_ns: Sequence[int], knot_energy_j: Sequence[float], knot_power_w: Sequence[float], t_ns: int
) -> float:
    """Cumulative energy at t_ns: monotone cubic Hermite between knots (power_w as slopes), linear outside."""
    n = len(knot_t_ns)
    if n == 0:
        return 0.0
    if t_ns <= knot_t_ns[0]:
        p = knot_power_w[0] if math.isfinite(knot_power_w[0]) else _secant_w(knot_t_ns, knot_energy_j, 0)
        return knot_energy_j[0] - p * (float(knot_t_ns[0] - t_ns) * 1e-9)
    if t_ns >= knot_t_ns[n - 1]:
        p = (
            knot_power_w[n - 1]
            if math.isfinite(knot_power_w[n - 1])
            else _secant_w(knot_t_ns, knot_energy_j, n - 2)
        )
        return knot_energy_j[n - 1] + p * (float(t_ns - knot_t_ns[n - 1]) * 1e-9)
    i = bisect.bisect_right(knot_t_ns, t_ns) - 1
    h_s = float(knot_t_ns[i + 1] - knot_t_ns[i]) * 1e-9
    e_a = knot_energy_j[i]
    de_j = knot_energy_j[i + 1] - e_a
    u = float(t_ns - knot_t_ns[i]) * 1e-9 / h_s
    delta_w = de_j / h_s
    if not delta_w > 0.0:
        return e_a + u * de_j
    d_a = max(knot_power_w[i], 0.0) if math.isfinite(knot_power_w[i]) else delta_w
    d_b = max(knot_power_w[i + 1], 0.0) if math.isfinite(knot_power_w[i + 1]) else delta_w
    alpha = d_a / delta_w
    beta = d_b / delta_w
    r2 = alpha * alpha + beta * beta
    if r2 > 9.0:  # Fritsch-Carlson: slopes inside the radius-3 circle keep the cubic monotone
        tau = 3.0 / math.sqrt(r2)
        d_a = tau * d_a
        d_b = tau * d_b
    u2 = u * u
    u3 = u2 * u
    return (
        e_a * (2.0 * u3 - 3.0 * u2 + 1.0)
        + h_s * d_a * (u3 - 2.0 * u2 + u)
        + knot_energy_j[i + 1] * (3.0 * u2 - 2.0 * u3)
        + h_s * d_b * (u3 - u2)
    )


def energy_at_many(
    knot_t_ns: Sequence[int],
    knot_energy_j: Sequence[float],
    knot_power_w: Sequence[float],
    t_ns: Sequence[int],
) -> np.ndarray:
    """energy_at for each query instant."""
    kt = [int(x) for x in knot_t_ns]
    ke = [float(x) for x in knot_energy_j]
    kp = [float(x) for x in knot_power_w]
    return np.array([energy_at(kt, ke, kp, int(t)) for t in t_ns], dtype=np.float64)
