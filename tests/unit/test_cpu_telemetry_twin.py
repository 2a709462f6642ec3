"""The native CPU telemetry parsers against their Python twin on random /proc/stat lines, tick pairs and
scaling_cur_freq texts, plus the cases that must be refused."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from fastmeter import _core
from fastmeter.reference import cpu_telemetry as twin

_TICKS = st.integers(0, 2**40)
_BLANK = st.sampled_from([" ", "  ", "\t"])


@st.composite
def stat_text(draw: st.DrawFn) -> str:
    values = draw(st.lists(_TICKS, min_size=0, max_size=11))
    body = "".join(draw(_BLANK) + str(v) for v in values)
    head = draw(st.sampled_from(["cpu ", "cpu", "cpu0 ", "intr ", "cpu  "]))
    tail = draw(st.sampled_from(["", "\n", "\ncpu0 1 2 3 4\n", " x\n"]))
    return head + body.lstrip(" \t" if head.endswith(" ") else "") + tail


@given(stat_text())
def test_proc_stat_parser_matches_its_twin(text: str) -> None:
    native = _core.parse_proc_stat_cpu(text)
    assert native == twin.parse_proc_stat_cpu(text)


@given(_TICKS, _TICKS, _TICKS, _TICKS)
def test_busy_share_matches_its_twin(b0: int, t0: int, b1: int, t1: int) -> None:
    native = _core.cpu_busy_pct(b0, t0, b1, t1)
    expected = twin.cpu_busy_pct((b0, t0), (b1, t1))
    assert (math.isnan(native) and math.isnan(expected)) or native == expected


@given(st.one_of(st.integers(0, 2**40).map(lambda k: f"{k}\n"), st.text(max_size=12)))
def test_cpufreq_parser_matches_its_twin(text: str) -> None:
    native, expected = _core.parse_cpufreq_mhz(text), twin.parse_cpufreq_mhz(text)
    assert (math.isnan(native) and math.isnan(expected)) or native == expected


def test_refusals_and_a_known_line() -> None:
    line = "cpu  4705 356 584 3699 23 23 0 0 0 0\ncpu0 1 2 3 4\n"
    busy, total = _core.parse_proc_stat_cpu(line)
    assert (busy, total) == (4705 + 356 + 584 + 23 + 0 + 0, 4705 + 356 + 584 + 3699 + 23 + 23)
    assert _core.parse_proc_stat_cpu("cpu0 1 2 3 4") is None and _core.parse_proc_stat_cpu("cpu  1 2 3") is None
    assert math.isnan(_core.cpu_busy_pct(10, 100, 10, 100))  # no tick passed
    assert math.isnan(_core.cpu_busy_pct(10, 100, 5, 200))  # busy went back: a reset
    assert math.isnan(_core.parse_cpufreq_mhz("2400000 kHz"))
