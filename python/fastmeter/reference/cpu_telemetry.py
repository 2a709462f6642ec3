"""Pure-Python twin of the CPU telemetry parsers (csrc/fastmeter/telemetry_parse.h), written from proc(5) and the
cpufreq sysfs documentation rather than from the C++.

proc(5), /proc/stat: the first line is "cpu" followed by the time, in USER_HZ ticks, the system spent in user,
nice, system, idle, iowait, irq, softirq, steal, guest and guest_nice mode (fields appeared over kernel versions;
guest time is also counted in user, guest_nice in nice, so those two are not added again). Idle time is idle plus
iowait (a CPU waiting for I/O runs nothing). cpufreq's scaling_cur_freq is the current frequency in kHz.
"""

from __future__ import annotations

import math
import re

_NUMBER = re.compile(r"[ \t]*([0-9]+)")
U64_MAX = 2**64 - 1


def parse_proc_stat_cpu(text: str) -> tuple[int, int] | None:
    """(busy, total) ticks of the aggregate line, or None when `text` does not start with one (or a value does not
    fit 64 bits, or fewer than the four fields every kernel has are present)."""
    if not text.startswith("cpu "):
        return None
    line = text[4:].split("\n", 1)[0]
    fields: list[int] = []
    pos = 0
    while len(fields) < 8:
        m = _NUMBER.match(line, pos)
        if m is None:
            break
        value = int(m.group(1))
        if value > U64_MAX:
            return None
        fields.append(value)
        pos = m.end()
    if len(fields) < 4:
        return None
    total = sum(fields)  # user..steal: at most 8 fields; guest ones excluded by the cap
    if total > U64_MAX:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return total - idle, total


def cpu_busy_pct(prev: tuple[int, int], cur: tuple[int, int]) -> float:
    """Percent of CPU time spent busy between two readings; NaN when no tick passed or a counter went back."""
    (busy0, total0), (busy1, total1) = prev, cur
    dt, db = total1 - total0, busy1 - busy0
    if dt <= 0 or db < 0 or db > dt:
        return math.nan
    return 100.0 * db / dt


def parse_cpufreq_mhz(text: str) -> float:
    """kHz text (one decimal integer, optional trailing whitespace) as MHz; NaN otherwise."""
    m = re.fullmatch(r"[ \t]*([0-9]+)[ \t\r\n]*", text)
    if m is None or int(m.group(1)) > U64_MAX:
        return math.nan
    return int(m.group(1)) * 1e-3
