"""The native integrate kernels and their pure-Python twin agree on random inputs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmeter import _core
from fastmeter.reference import integrate as ref
from fastmeter.reference.powersim import TWIN

U64 = 2**64 - 1


def assert_close(native: np.ndarray, twin: np.ndarray) -> None:
    np.testing.assert_allclose(native, twin, rtol=1e-9, atol=1e-12, equal_nan=True)


@given(st.integers(0, U64), st.integers(0, U64), st.integers(0, U64))
def test_counter_delta_matches_twin(prev: int, cur: int, range_: int) -> None:
    range_ = 0 if range_ % 3 == 0 else max(range_, prev + 1, cur + 1) if max(prev, cur) < U64 else 0
    d = _core.counter_delta(prev, cur, range_)
    assert d == ref.counter_delta(prev, cur, range_)
    if range_:
        assert (prev + d) % range_ == cur


@st.composite
def polled_streams(draw: st.DrawFn) -> dict:
    """A channel's polls: jittery times, a counter that steps, wraps or resets, gaps, failures, held power."""
    n = draw(st.integers(1, 120))
    range_ = draw(st.sampled_from([0, 2**32, 1000, 2**63]))
    t_ns = np.cumsum(draw(st.lists(st.integers(1, 3_000_000), min_size=n, max_size=n))).astype(np.int64)
    raw = draw(st.integers(0, (range_ or 2**40) - 1))
    counter_raw, power_w, flags = [], [], []
    p_w = draw(st.floats(0, 800))
    for _ in range(n):
        event = draw(st.sampled_from(["hold", "hold", "step", "step", "reset", "wrap"]))
        if event == "step":
            raw += draw(st.integers(1, 500))
        elif event == "reset":
            raw = draw(st.integers(0, 50))
        elif event == "wrap" and range_:
            raw += range_ - draw(st.integers(1, 20))
        if range_:
            raw %= range_
        if draw(st.integers(0, 4)) == 0:
            p_w = draw(st.floats(0, 800))
        counter_raw.append(raw)
        power_w.append(p_w if draw(st.integers(0, 9)) else float("nan"))
        flags.append(draw(st.sampled_from([3, 3, 3, 3, 1, 2, 0, 4, 7])))
    return {
        "t_ns": t_ns,
        "counter_raw": np.array(counter_raw, dtype=np.uint64),
        "power_w": np.array(power_w),
        "flags": np.array(flags, dtype=np.uint32),
        "unit_j": draw(st.sampled_from([1e-3, 1e-6, 15.3e-6])),
        "range_": range_,
        "has_counter": draw(st.booleans()),
        "window_ns": draw(st.sampled_from([0, 1_000_000, 25_000_000])),
    }


def run(kernels, s: dict):
    energy_j, counter, changed = kernels.accumulate(
        s["t_ns"], s["counter_raw"], s["power_w"], s["flags"], s["unit_j"], s["range_"], s["has_counter"]
    )
    knots = kernels.build_knots(s["t_ns"], energy_j, s["power_w"], counter, changed, s["window_ns"])
    return (energy_j, counter, changed), knots


@settings(max_examples=200, deadline=None)
@given(polled_streams())
def test_accumulate_and_knots_match_twin(s: dict) -> None:
    (e_n, c_n, ch_n), (kt_n, ke_n, kp_n, period_n) = run(_core, s)
    (e_t, c_t, ch_t), (kt_t, ke_t, kp_t, period_t) = run(TWIN, s)
    assert_close(e_n, e_t)
    np.testing.assert_array_equal(c_n, c_t)
    np.testing.assert_array_equal(ch_n, ch_t)
    np.testing.assert_array_equal(kt_n, kt_t)
    assert_close(ke_n, ke_t)
    assert_close(kp_n, kp_t)
    assert_close(np.array([period_n]), np.array([period_t]))
    # Energy never decreases, and knots are in time order with energies that never decrease either.
    assert np.all(np.diff(e_n) >= 0)
    assert np.all(np.diff(kt_n) > 0)
    assert np.all(np.diff(ke_n) >= -1e-12 * np.maximum(1.0, np.abs(ke_n[1:])))


@st.composite
def knot_curves(draw: st.DrawFn):
    n = draw(st.integers(0, 40))
    kt = np.cumsum(draw(st.lists(st.integers(1, 10**9), min_size=n, max_size=n))).astype(np.int64) - 10**9
    ke = np.cumsum(draw(st.lists(st.floats(0, 1e4), min_size=n, max_size=n)))
    kp = np.array(
        draw(st.lists(st.one_of(st.floats(0, 2000), st.just(float("nan"))), min_size=n, max_size=n))
    )
    lo = int(kt[0]) if n else 0
    hi = int(kt[-1]) if n else 0
    queries = draw(st.lists(st.integers(lo - 2 * 10**9, hi + 2 * 10**9), min_size=1, max_size=30))
    queries += [int(x) for x in kt]  # exactly on knots
    return kt, ke, kp.astype(np.float64), np.array(queries, dtype=np.int64)


@settings(max_examples=200, deadline=None)
@given(knot_curves())
def test_energy_at_matches_twin(curve) -> None:
    kt, ke, kp, q = curve
    native = _core.energy_at(kt, ke, kp, q)
    assert_close(native, TWIN.energy_at(kt, ke, kp, q))
    if len(kt):
        on_knots = native[len(q) - len(kt) :]
        assert_close(on_knots, ke)
    # Energy never decreases along the curve, whatever the slopes (the limiter's job).
    order = np.argsort(q, kind="stable")
    curve = native[order]
    assert np.all(np.diff(curve) >= -1e-9 * np.maximum(1.0, np.abs(curve[1:])))
