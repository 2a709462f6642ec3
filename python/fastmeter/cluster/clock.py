"""Each node's clock offset to the driver's CLOCK_MONOTONIC, estimated from round trips, and the bound on its error.

One exchange: the driver reads its clock (d0), asks the node for its clock (n), reads its own again (d1). The node
read n somewhere inside [d0, d1] on the driver's clock, so offset = n - (d0 + d1) / 2 is off by at most
(d1 - d0) / 2: half the round trip. Of several exchanges the one with the shortest round trip has the tightest bound
(the scheduler delayed it least), so that one is kept (NTP's minimum-delay filter, without its statistics).

Between two estimates the offset is interpolated linearly (clocks drift slowly and smoothly); its bound is the
larger of the two estimates' bounds. Before the first and after the last estimate it is held constant.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Exchange:
    """One round trip: driver clock before (d0_ns) and after (d1_ns), node clock read in between (node_ns)."""

    d0_ns: int
    node_ns: int
    d1_ns: int

    @property
    def rtt_ns(self) -> int:
        return self.d1_ns - self.d0_ns


@dataclass(frozen=True)
class OffsetEstimate:
    """node clock = driver clock + offset_ns, within +-bound_ns, as measured at driver instant t_ns."""

    t_ns: int
    offset_ns: int
    bound_ns: int
    rtt_ns: int
    exchanges: int

    def to_dict(self) -> dict[str, int]:
        return {
            "t_ns": self.t_ns,
            "offset_ns": self.offset_ns,
            "bound_ns": self.bound_ns,
            "rtt_ns": self.rtt_ns,
            "exchanges": self.exchanges,
        }


def estimate_offset(exchanges: Sequence[Exchange]) -> OffsetEstimate:
    """The minimum-RTT exchange's offset, with bound = ceil(RTT / 2)."""
    if not exchanges:
        raise ValueError("estimate_offset needs at least one exchange")
    bad = [x for x in exchanges if x.d1_ns < x.d0_ns]
    if bad:
        raise ValueError(f"an exchange ends before it starts on the driver's clock: {bad[0]}")
    best = min(exchanges, key=lambda x: x.rtt_ns)
    # Integer arithmetic: offset = node - (d0 + d1) / 2 rounded down, bound rounded up, so the interval still holds.
    offset_ns = best.node_ns - (best.d0_ns + best.d1_ns) // 2
    bound_ns = (best.rtt_ns + 1) // 2 + 1
    return OffsetEstimate(best.d1_ns, offset_ns, bound_ns, best.rtt_ns, len(exchanges))


class OffsetTrack:
    """A node's offset estimates in driver time order; `at(t_ns)` maps a driver instant to (offset_ns, bound_ns)."""

    def __init__(self) -> None:
        self.estimates: list[OffsetEstimate] = []
        self._t: list[int] = []

    def add(self, e: OffsetEstimate) -> None:
        if self._t and e.t_ns < self._t[-1]:
            raise ValueError("offset estimates must be added in driver time order")
        self.estimates.append(e)
        self._t.append(e.t_ns)

    def at(self, t_ns: int) -> tuple[int, int]:
        if not self.estimates:
            raise ValueError("no clock offset estimate yet")
        i = bisect.bisect_right(self._t, t_ns)
        if i == 0:
            e = self.estimates[0]
            return e.offset_ns, e.bound_ns
        if i == len(self.estimates):
            e = self.estimates[-1]
            return e.offset_ns, e.bound_ns
        a, b = self.estimates[i - 1], self.estimates[i]
        span = b.t_ns - a.t_ns
        offset = a.offset_ns + (b.offset_ns - a.offset_ns) * (t_ns - a.t_ns) // span if span else b.offset_ns
        return offset, max(a.bound_ns, b.bound_ns)

    def to_node(self, t_ns: int) -> int:
        """A driver instant on the node's clock."""
        return t_ns + self.at(t_ns)[0]

    def to_driver(self, node_ns: int) -> int:
        """A node instant on the driver's clock: t with t + offset(t) = node_ns. The offset changes by a few ppm of
        the time, so t = node_ns - offset(t) converges in a step or two."""
        t = node_ns - self.at(node_ns)[0]
        for _ in range(8):
            nxt = node_ns - self.at(t)[0]
            if nxt == t:
                break
            t = nxt
        return t
