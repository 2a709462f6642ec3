"""Pure-Python twin of fastmeter::counter_delta (csrc/fastmeter/integrate.cpp): raw ticks between two readings
of a hardware energy counter that wraps.

RAPL's powercap energy_uj runs over [0, max_energy_range_uj] and starts again at 0, so after one wrap
delta = cur + max_energy_range_uj - prev; an MSR counter is 32 bits, range 2^32. A range of 0 marks a counter that
does not wrap in practice (NVML's 64-bit mJ counter): going backwards there is a reset and adds nothing.
"""

from __future__ import annotations


def counter_delta(prev: int, cur: int, range_: int) -> int:
    """Ticks from prev to cur: one wrap at range_ when cur < prev; 0 for a reset when range_ == 0."""
    if cur >= prev:
        return cur - prev
    if range_ == 0:
        return 0
    return (range_ - prev) + cur
