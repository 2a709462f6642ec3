"""Wraparound arithmetic: the native counter_delta against its pure-Python twin and exact cases."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fastmeter import _core
from fastmeter.reference.counters import counter_delta

U64 = 2**64 - 1


@st.composite
def wrapping_readings(draw):
    """(prev, cur, range) of a counter that runs over [0, range]."""
    range_ = draw(st.integers(min_value=1, max_value=U64))
    prev = draw(st.integers(min_value=0, max_value=range_))
    cur = draw(st.integers(min_value=0, max_value=range_))
    return prev, cur, range_


@given(wrapping_readings())
def test_native_matches_twin_on_wrapping_counters(readings):
    prev, cur, range_ = readings
    d = _core.counter_delta(prev, cur, range_)
    assert d == counter_delta(prev, cur, range_)
    # Adding the delta to prev lands on cur again, modulo the range.
    assert (prev + d) % range_ == cur % range_


@given(st.integers(min_value=0, max_value=U64), st.integers(min_value=0, max_value=U64))
def test_native_matches_twin_on_non_wrapping_counters(prev, cur):
    assert _core.counter_delta(prev, cur, 0) == counter_delta(prev, cur, 0) == max(cur - prev, 0)


def test_exact_cases():
    assert _core.counter_delta(10, 25, 100) == 15
    assert _core.counter_delta(90, 5, 100) == 15  # 5 + 100 - 90
    assert _core.counter_delta(2**32 - 3, 4, 2**32) == 7  # a 32-bit MSR counter
    assert _core.counter_delta(7, 7, 2**32) == 0
    assert _core.counter_delta(50, 10, 0) == 0  # a reset of a counter that does not wrap
