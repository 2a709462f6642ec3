"""Clock offset estimation from round trips (fastmeter.cluster.clock), against exchanges simulated with a known
offset and random one-way delays: the estimate must hold the true offset within its bound."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastmeter.cluster.clock import Exchange, OffsetEstimate, OffsetTrack, estimate_offset

delays = st.tuples(st.integers(0, 50_000_000), st.integers(0, 50_000_000))


def _exchange(d0_ns: int, offset_ns: int, out_ns: int, back_ns: int) -> Exchange:
    """The node reads its clock out_ns after the driver's d0 and the answer takes back_ns to return."""
    return Exchange(d0_ns, d0_ns + out_ns + offset_ns, d0_ns + out_ns + back_ns)


@given(
    offset_ns=st.integers(-(10**15), 10**15),
    start_ns=st.integers(0, 10**15),
    legs=st.lists(delays, min_size=1, max_size=20),
)
def test_the_true_offset_lies_within_the_bound(offset_ns: int, start_ns: int, legs: list[tuple[int, int]]) -> None:
    exchanges = [_exchange(start_ns + 10**9 * i, offset_ns, a, b) for i, (a, b) in enumerate(legs)]
    e = estimate_offset(exchanges)
    assert abs(e.offset_ns - offset_ns) <= e.bound_ns
    best = min(a + b for a, b in legs)
    assert e.rtt_ns == best and e.bound_ns <= best // 2 + 2
    assert e.exchanges == len(legs)


def test_symmetric_delays_give_the_offset_exactly() -> None:
    e = estimate_offset([_exchange(1000, 777, 40, 40), _exchange(5000, 777, 10, 900)])
    assert e.offset_ns == 777 and e.rtt_ns == 80


def test_bad_exchanges_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        estimate_offset([])
    with pytest.raises(ValueError, match="ends before it starts"):
        estimate_offset([Exchange(10, 5, 9)])


GAP_NS = 10_000_000_000  # 10 s between estimates


@given(
    a=st.integers(-(10**15), 10**15),
    drift_ns=st.integers(-1_000_000, 1_000_000),  # up to 100 ppm over 10 s
    frac=st.floats(0, 1),
)
def test_track_interpolates_between_estimates_and_holds_outside(a: int, drift_ns: int, frac: float) -> None:
    b = a + drift_ns
    track = OffsetTrack()
    track.add(OffsetEstimate(GAP_NS, a, 30, 60, 16))
    track.add(OffsetEstimate(2 * GAP_NS, b, 50, 100, 16))
    t = GAP_NS + int(frac * GAP_NS)
    offset, bound = track.at(t)
    assert min(a, b) <= offset <= max(a, b)
    assert abs(offset - (a + drift_ns * (t - GAP_NS) / GAP_NS)) <= 1
    assert bound == 50
    assert track.at(0) == (a, 30) and track.at(3 * GAP_NS) == (b, 50)
    # Driver -> node -> driver comes back to the instant (the offset moves by < 1 ns per 10 us of drift).
    assert abs(track.to_driver(track.to_node(t)) - t) <= 1


def test_track_needs_an_estimate_and_time_order() -> None:
    track = OffsetTrack()
    with pytest.raises(ValueError, match="no clock offset"):
        track.at(0)
    track.add(OffsetEstimate(10, 0, 1, 2, 1))
    with pytest.raises(ValueError, match="time order"):
        track.add(OffsetEstimate(5, 0, 1, 2, 1))
