"""The error bound (csrc/fastmeter/bound.cpp) against its twin (fastmeter.reference.bound, written from the
specification) and against analytic truth on the reference power simulator, over random loads, counter refresh
periods and phases, power readings and windows (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastmeter import _core, validity
from fastmeter.reference import bound as twin
from fastmeter.reference.powersim import SquareWave, simulate

POLL_NS = 1_000_000


@st.composite
def cases(draw: st.DrawFn) -> dict:
    low = draw(st.floats(20.0, 300.0))
    with_power = draw(st.booleans())
    period_s = draw(st.floats(0.005, 0.5))
    duty = draw(st.floats(0.05, 0.95))
    if with_power:
        # Power read at every poll: a high phase of two polls or more is seen, so its peak bounds the power.
        high = draw(st.floats(low, 900.0))
        duty = max(duty, 2.5e-3 / period_s) if 2.5e-3 < period_s else 1.0
    else:
        # No readings: the assumption (peak <= margin x the largest mean seen) needs a peak near the mean power.
        high = draw(st.floats(low, validity.POWER_BOUND_MARGIN * low))
    refresh_ms = draw(st.sampled_from([0, 1, 10, 20, 50, 100, 137, 200]))
    return {
        "load": SquareWave(low_w=low, high_w=high, period_s=period_s, duty=min(duty, 1.0)),
        "counter_refresh_ns": refresh_ms * 1_000_000,
        "counter_phase_ns": draw(st.integers(0, max(refresh_ms * 1_000_000 - 1, 0))),
        "with_power": with_power,
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def streams(case: dict):
    s = simulate(
        case["load"],
        duration_s=2.0,
        poll_ns=POLL_NS,
        counter_refresh_ns=case["counter_refresh_ns"],
        counter_phase_ns=case["counter_phase_ns"],
        power_refresh_ns=0 if case["with_power"] else None,
        power_window_ns=1000,  # ~instantaneous: the average of the last microsecond
        seed=case["seed"],
    )
    energy, counter, changed = _core.accumulate(s.t_ns, s.counter_raw, s.power_w, s.flags, s.unit_j, 0, True)
    return s, energy, counter, changed


def test_margin_is_the_same_on_both_sides() -> None:
    assert _core.POWER_BOUND_MARGIN == validity.POWER_BOUND_MARGIN


@settings(max_examples=60, deadline=None)
@given(case=cases(), data=st.data())
def test_truth_lies_inside_the_bound_and_the_twin_agrees(case: dict, data: st.DataObject) -> None:
    s, energy, counter, changed = streams(case)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    lengths_ns = rng.choice([1, 10, 100, 1000], 24) * 1_000_000 * rng.uniform(0.5, 1.0, 24)
    first, last = int(s.t_ns[0]), int(s.t_ns[-1])
    t0 = rng.integers(first, last - 1_000_000_000, 24, dtype=np.int64)
    t1 = np.minimum(t0 + lengths_ns.astype(np.int64), last)
    q = np.concatenate([t0, t1])
    lo, hi, p_max = _core.energy_range(s.t_ns, energy, s.power_w, counter, changed, s.unit_j, q)
    tlo, thi, tp_max = twin.energy_range(s.t_ns, energy, s.power_w, counter, changed, s.unit_j, q)
    assert p_max == tp_max
    # The bound's stated assumption (docs/methodology.md): true power never exceeds P_max. Readings at every poll
    # see the peak; without readings the seen means are diluted by poll gaps, so check it rather than presume it.
    assume(p_max >= case["load"].high_w)
    np.testing.assert_allclose(lo, tlo, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hi, thi, rtol=1e-12, atol=1e-12)
    # The cumulative curve counts from the first reading, which held the energy of the refresh before the first poll.
    held0 = (
        s.t_ns[0]
        if case["counter_refresh_ns"] == 0
        else (
            (s.t_ns[0] - case["counter_phase_ns"]) // case["counter_refresh_ns"] * case["counter_refresh_ns"]
            + case["counter_phase_ns"]
        )
    )
    truth_at = case["load"].energy_j(q * 1e-9) - case["load"].energy_j(held0 * 1e-9)
    assert np.all((lo <= truth_at) & (truth_at <= hi))
    # Spans on the curve the Meter reports, with the bound it reports.
    kt, ke, kp, _ = _core.build_knots(s.t_ns, energy, s.power_w, counter, changed, 0)
    value = _core.energy_at(kt, ke, kp, t1) - _core.energy_at(kt, ke, kp, t0)
    n = len(t0)
    slo, shi = _core.span_range(lo[:n], hi[:n], lo[n:], hi[n:], p_max, t0, t1)
    tslo, tshi = twin.span_range(tlo[:n], thi[:n], tlo[n:], thi[n:], tp_max, t0, t1)
    np.testing.assert_allclose(slo, tslo, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(shi, tshi, rtol=1e-12, atol=1e-12)
    bound = twin.bound_of(value, slo, shi)
    truth = case["load"].energy_j(t1 * 1e-9) - case["load"].energy_j(t0 * 1e-9)
    assert np.all(np.abs(value - truth) <= bound), (value - truth, bound)


def test_bound_is_nan_without_observations() -> None:
    lo, hi, p_max = _core.energy_range(
        np.array([], np.int64),
        np.array([]),
        np.array([]),
        np.array([], bool),
        np.array([], bool),
        1e-3,
        np.array([5], np.int64),
    )
    assert math.isinf(p_max) and lo[0] == -math.inf and hi[0] == math.inf
    assert math.isnan(twin.bound_of(np.array([1.0]), lo, hi)[0])
