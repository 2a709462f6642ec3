"""Random inputs: the native sweep agrees with the pure-Python twin, and energy and time are conserved."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fastmeter.attribution import attribute, event_times

KEYS = ("energy_j", "prefill_energy_j", "decode_energy_j", "attributed_s", "uncertainty_j", "net_energy_j")


@st.composite
def scenarios(draw):
    """Small integer-ns timelines so that curve points, edges and chunks often coincide."""
    n_pts = draw(st.integers(1, 8))
    t = np.array(sorted(draw(st.sets(st.integers(0, 200), min_size=n_pts, max_size=n_pts))), dtype=np.int64)
    steps = draw(st.lists(st.floats(0, 100), min_size=n_pts, max_size=n_pts))
    e = np.cumsum(steps)
    starts, ends, first, offsets, chunk_t, chunk_k = [], [], [], [0], [], []
    for _ in range(draw(st.integers(0, 6))):
        a = draw(st.integers(-20, 220))
        b = a + draw(st.integers(0, 80))
        starts.append(a)
        ends.append(b)
        first.append(draw(st.none() | st.integers(a, b)))
        k = draw(st.integers(0, 4))
        chunk_t += sorted(draw(st.lists(st.integers(a, b), min_size=k, max_size=k)))
        chunk_k += draw(st.lists(st.integers(0, 3), min_size=k, max_size=k))
        offsets.append(len(chunk_t))
    return {
        "t_ns": t,
        "energy_j": e,
        "start_ns": np.array(starts, dtype=np.int64),
        "end_ns": np.array(ends, dtype=np.int64),
        "first_token_ns": first,
        "chunk_offsets": offsets,
        "chunk_t_ns": np.array(chunk_t, dtype=np.int64),
        "chunk_tokens": np.array(chunk_k, dtype=np.int64),
        "method": draw(st.sampled_from(["time-share", "token-weighted"])),
        "update_period_s": draw(st.integers(0, 40).map(lambda n: n * 1e-9) | st.just(float("nan"))),
        "idle_power_w": draw(st.none() | st.floats(0, 1e9)),
        "bound_j": draw(st.none() | st.lists(st.just(float("nan")) | st.floats(0, 50), min_size=n_pts, max_size=n_pts)),
    }


def same_or_both_nan(x, y, atol: float) -> None:
    assert (np.isnan(x) == np.isnan(y)).all()
    ok = ~np.isnan(x)
    np.testing.assert_allclose(x[ok], y[ok], rtol=1e-9, atol=atol)


def tolerance(a) -> float:
    return 1e-9 * max(1.0, a.total_j)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_native_agrees_with_twin(case):
    native = attribute(**case, backend="native")
    twin = attribute(**case, backend="reference")
    for key in KEYS:
        same_or_both_nan(getattr(native, key), getattr(twin, key), tolerance(native))
    assert (native.uncertainty, native.heuristic_points) == (twin.uncertainty, twin.heuristic_points)
    for key in ("idle_j", "total_j"):
        assert abs(getattr(native, key) - getattr(twin, key)) <= tolerance(native)
    assert abs(native.idle_s - twin.idle_s) <= 1e-15 + 1e-12 * native.span_s


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_energy_and_time_are_conserved(case):
    a = attribute(**case)
    assert abs(a.energy_j.sum() + a.idle_j - a.total_j) <= tolerance(a)
    assert abs(a.attributed_s.sum() + a.idle_s - a.span_s) <= 1e-12 * max(1.0, a.span_s)
    np.testing.assert_allclose(a.prefill_energy_j + a.decode_energy_j, a.energy_j, rtol=1e-12, atol=tolerance(a))
    assert (a.energy_j >= -tolerance(a)).all()
    assert not (a.uncertainty_j < 0).any()
    if not np.isnan(case["update_period_s"]):  # NaN only where neither a bound nor an update period is known
        assert not np.isnan(a.uncertainty_j).any()


@settings(max_examples=100, deadline=None)
@given(scenarios(), st.integers(0, 200))
def test_an_extra_point_on_the_line_changes_nothing(case, extra_ns):
    """E is linear between points, so inserting a point on that line must not move any joule."""
    t, e = case["t_ns"], case["energy_j"]
    assume(len(t) >= 2 and t[0] < extra_ns < t[-1] and extra_ns not in t)
    refined_t = np.sort(np.append(t, extra_ns))
    refined = {**case, "t_ns": refined_t, "energy_j": np.interp(refined_t, t, e), "update_period_s": 0.0}
    refined["bound_j"] = None
    a, b = attribute(**{**case, "update_period_s": 0.0, "bound_j": None}), attribute(**refined)
    np.testing.assert_allclose(a.energy_j, b.energy_j, rtol=1e-9, atol=tolerance(a))
    np.testing.assert_allclose(a.prefill_energy_j, b.prefill_energy_j, rtol=1e-9, atol=tolerance(a))


@st.composite
def measured_and_true(draw):
    """A scenario whose curve is a measurement of a true curve within its bounds at the points, and the true curve
    at every cut besides: anywhere non-decreasing between the points' true values, flat outside them."""
    case = draw(scenarios())
    t = case["t_ns"]
    truth = np.cumsum(draw(st.lists(st.floats(0, 100), min_size=len(t), max_size=len(t))))
    slack = np.array(draw(st.lists(st.floats(0, 10), min_size=len(t), max_size=len(t))))
    cuts = np.union1d(t, event_times(case["start_ns"], case["end_ns"], case["first_token_ns"], case["chunk_t_ns"]))
    cuts = cuts[(cuts > t[0]) & (cuts < t[-1]) & ~np.isin(cuts, t)]
    i = np.searchsorted(t, cuts)  # t[i - 1] < cut < t[i]
    frac = np.sort(np.array(draw(st.lists(st.floats(0, 1), min_size=len(cuts), max_size=len(cuts)))))
    frac = np.maximum.accumulate(frac) if len(frac) else frac  # several cuts in one interval stay ordered
    between = truth[i - 1] + (truth[i] - truth[i - 1]) * frac
    order = np.argsort(np.concatenate([t, cuts]), kind="stable")
    true_curve = (np.concatenate([t, cuts])[order], np.concatenate([truth, between])[order])
    bound = np.abs(case["energy_j"] - truth) + slack
    return {**case, "bound_j": bound, "update_period_s": 0.0}, true_curve


@settings(max_examples=300, deadline=None)
@given(measured_and_true())
def test_the_error_against_the_true_curve_lies_within_the_uncertainty(drawn):
    """The claim of docs/attribution.md: with each point's error bound given, |energy_j on the measured curve -
    energy_j on the true curve| <= uncertainty_j for every request, whatever the truth does between points."""
    case, (true_t, true_e) = drawn
    measured = attribute(**case)
    true = attribute(**{**case, "t_ns": true_t, "energy_j": true_e, "bound_j": None})
    assert measured.uncertainty == "bound"
    slack = 1e-9 * max(1.0, measured.total_j, true.total_j)
    assert (np.abs(measured.energy_j - true.energy_j) <= measured.uncertainty_j + slack).all()
