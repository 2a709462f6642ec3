"""Pure-Python twin of the update-aware schedule (csrc/fastmeter/schedule.h), written from its specification.

A hardware field (an NVML energy counter, a power reading) publishes a new value every `period`; a poll sees a
change when an update fell between it and the poll before. The tracker learns period and phase from dense polls,
then asks for polls only within `guard_ns` of each expected update:

- learning: dense polls. A change is *located* at the middle of (previous poll, poll that saw it], but only when
  the previous poll is at most two dense periods back (else the instant is unknown and the evidence restarts).
  With the last 9 located changes, the 8 intervals between them decide: median below 4 polls = a continuous
  counter (state fixed). Otherwise an interval may span several updates (a value can repeat across one), so:
  period = (newest - oldest) // sum(round(interval / shortest interval)); it locks when at least half the intervals
  round to one period and every interval lies within 3/4 of the guard of k = round(interval / period) periods with
  1 <= k <= 4; otherwise it keeps learning (fixed after 32 changes without a lock). Rounding is half up.
- locked: the next update is expected at e = last located + period; polls only from e - guard on. A located change
  moves e to located + period and corrects period by (located - expected) / 8 (integer division truncating toward
  zero, as C++ does). A change that cannot be located, or three bands in a row without a change, is a miss: back to
  learning with no evidence; the next lock is a re-lock.
- quiet: no change for 1 s while not locked. A change makes it learning again.

All arithmetic is on integers, so the twin and the native tracker must agree exactly on every poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

LEARNING, LOCKED, FIXED, QUIET = 0, 1, 2, 3
STATE_NAMES = {LEARNING: "learning", LOCKED: "locked", FIXED: "fixed", QUIET: "quiet"}

LOCK_INTERVALS = 8
CONTINUOUS_POLLS = 4
IRREGULAR_CHANGES = 32
MAX_QUIET_BANDS = 3
MAX_MULTIPLE = 4
PERIOD_GAIN = 8
QUIET_NS = 1_000_000_000


def _div_trunc(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _round_div(a: int, b: int) -> int:
    """a / b rounded half up (a >= 0, b > 0)."""
    return (2 * a + b) // (2 * b)


@dataclass
class Tracker:
    poll_ns: int
    guard_ns: int
    state: int = LEARNING
    period_ns: int = 0
    expected_ns: int = 0
    misses: int = 0
    relocks: int = 0
    _polls: list[int] = field(default_factory=list)
    _located: list[int] = field(default_factory=list)  # evidence since the last reset, newest last
    _changes_unlocked: int = 0
    _last_change_poll_ns: int = 0
    _quiet_bands: int = 0
    _ever_locked: bool = False

    def observe(self, t_ns: int, changed: bool) -> None:
        if not self._polls:
            self._polls.append(t_ns)
            self._last_change_poll_ns = t_ns
            return
        prev = self._polls[-1]
        self._polls = [prev, t_ns]  # only the latest two polls matter
        precise = t_ns - prev <= 2 * self.poll_ns
        located = prev + (t_ns - prev) // 2
        if changed:
            self._last_change_poll_ns = t_ns
        if self.state == LOCKED:
            self._observe_locked(t_ns, changed, precise, located)
            return
        if changed:
            if self.state == QUIET:
                self.state = LEARNING
            if precise:
                self._learn(located)
            else:
                self._located.clear()
        elif t_ns - self._last_change_poll_ns >= QUIET_NS:
            self.state = QUIET
            self._located.clear()
            self._changes_unlocked = 0

    def _observe_locked(self, t_ns: int, changed: bool, precise: bool, located: int) -> None:
        if changed:
            if not precise:
                self._miss()
                return
            self.period_ns += _div_trunc(located - self.expected_ns, PERIOD_GAIN)
            self.expected_ns = located + self.period_ns
            self._quiet_bands = 0
        elif t_ns > self.expected_ns + self.guard_ns:
            self._quiet_bands += 1
            if self._quiet_bands >= MAX_QUIET_BANDS:
                self._miss()
                return
            self.expected_ns += self.period_ns

    def _learn(self, located: int) -> None:
        self._located = (self._located + [located])[-(LOCK_INTERVALS + 1) :]
        self._changes_unlocked += 1
        if len(self._located) <= LOCK_INTERVALS:
            return
        gaps = [b - a for a, b in zip(self._located, self._located[1:])]
        median = sorted(gaps)[LOCK_INTERVALS // 2]
        if median < CONTINUOUS_POLLS * self.poll_ns:
            self.state = FIXED
            return
        shortest = min(gaps)
        period = (self._located[-1] - self._located[0]) // sum(_round_div(g, shortest) for g in gaps)
        if period <= 0:
            return
        tol = self.guard_ns * 3 // 4
        multiples = [_round_div(g, period) for g in gaps]
        fits = all(1 <= k <= MAX_MULTIPLE and abs(g - k * period) <= tol for g, k in zip(gaps, multiples))
        at_least_half_one_period = _round_div(sorted(gaps)[LOCK_INTERVALS // 2 - 1], period) == 1
        if not at_least_half_one_period or not fits:
            if self._changes_unlocked >= IRREGULAR_CHANGES:
                self.state = FIXED
            return
        self.period_ns = period
        self.expected_ns = located + self.period_ns
        self.state = LOCKED
        self.relocks += int(self._ever_locked)
        self._ever_locked = True
        self._quiet_bands = 0
        self._changes_unlocked = 0

    def _miss(self) -> None:
        self.misses += 1
        self.state = LEARNING
        self._located.clear()
        self._changes_unlocked = 0
        self._quiet_bands = 0

    def next_poll_ns(self, after_ns: int) -> int:
        if self.state != LOCKED:
            return after_ns
        return max(after_ns, self.expected_ns - self.guard_ns)


@dataclass(frozen=True)
class ScheduleRun:
    poll_t_ns: list[int]
    states: list[int]
    period_ns: int
    misses: int
    relocks: int


def simulate(update_t_ns: Sequence[int], start_ns: int, end_ns: int, poll_ns: int, guard_ns: int) -> ScheduleRun:
    """Drive one tracker with a made-up field: polls on the grid start_ns + k * poll_ns that it asks for, up to
    end_ns; a poll sees a change when an update instant (sorted) lies in (previous poll, poll]."""
    tr = Tracker(poll_ns, guard_ns)
    polls: list[int] = []
    states: list[int] = []
    updates = sorted(update_t_ns)
    i = 0
    t = start_ns
    while t <= end_ns:
        seen = 0
        while i < len(updates) and updates[i] <= t:
            seen += 1
            i += 1
        tr.observe(t, bool(seen) and bool(polls))
        polls.append(t)
        states.append(tr.state)
        want = tr.next_poll_ns(t + poll_ns)
        t = start_ns + -(-(want - start_ns) // poll_ns) * poll_ns  # next grid point at or after want
    return ScheduleRun(polls, states, tr.period_ns, tr.misses, tr.relocks)
