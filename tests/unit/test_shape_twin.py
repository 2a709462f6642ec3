"""The activity shaping kernel (csrc/fastmeter/shape.cpp) against its twin (fastmeter.reference.shape, written from
the rule) on random curves, power models and queries (hypothesis), and the rule's defining properties: every
measured value is kept at its knot, and inside a knot interval energy follows the predicted power's integral."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmeter import _core
from fastmeter.reference.shape import shape_curve as twin


@st.composite
def cases(draw: st.DrawFn) -> dict:
    base = draw(st.integers(0, 10**15))
    knot_gaps = draw(st.lists(st.integers(1, 200_000_000), min_size=0, max_size=12))
    knots = base + np.concatenate([[0], np.cumsum(knot_gaps)]).astype(np.int64)
    deltas = draw(st.lists(st.floats(0.0, 500.0), min_size=len(knots) - 1, max_size=len(knots) - 1))
    energy = draw(st.floats(0.0, 1e6)) + np.concatenate([[0.0], np.cumsum(deltas)])
    lo, hi = int(knots[0]) - 50_000_000, int(knots[-1]) + 50_000_000
    power_t = np.unique(np.array(draw(st.lists(st.integers(lo, hi), min_size=0, max_size=20)), dtype=np.int64))
    # Zeros included: an interval where the model predicts nothing is shaped linearly.
    power_w = np.array(
        draw(
            st.lists(
                st.sampled_from([0.0, 1.0, 37.5, 400.0]) | st.floats(0.0, 1000.0),
                min_size=len(power_t),
                max_size=len(power_t),
            )
        )
    )
    queries = np.array(
        draw(st.lists(st.integers(lo, hi) | st.sampled_from(knots.tolist()), max_size=30)), dtype=np.int64
    )
    return {"knots": knots, "energy": energy, "power_t": power_t, "power_w": power_w, "queries": queries}


@settings(max_examples=300, deadline=None)
@given(cases())
def test_kernel_matches_twin(c: dict) -> None:
    native = _core.shape_curve(c["knots"], c["energy"], c["power_t"], c["power_w"], c["queries"])
    ref = twin(
        c["knots"].tolist(), c["energy"].tolist(), c["power_t"].tolist(), c["power_w"].tolist(), c["queries"].tolist()
    )
    scale = max(1.0, float(np.abs(c["energy"]).max()))
    np.testing.assert_allclose(native, ref, rtol=0, atol=1e-9 * scale)


@settings(max_examples=200, deadline=None)
@given(cases())
def test_knots_keep_the_measurement_and_the_curve_never_decreases(c: dict) -> None:
    at_knots = _core.shape_curve(c["knots"], c["energy"], c["power_t"], c["power_w"], c["knots"])
    np.testing.assert_array_equal(at_knots, c["energy"])  # every measured delta conserved exactly
    q = np.sort(c["queries"])
    shaped = _core.shape_curve(c["knots"], c["energy"], c["power_t"], c["power_w"], q)
    assert np.all(np.diff(shaped) >= 0)


def test_energy_follows_the_predicted_power_inside_an_interval() -> None:
    # One 100 ms interval holding 10 J; the model says 300 W for its first 20 ms and 50 W after: the first 20 ms
    # get 300*0.02 / (300*0.02 + 50*0.08) = 60 % of it.
    knots = np.array([0, 100_000_000], dtype=np.int64)
    out = _core.shape_curve(
        knots,
        np.array([5.0, 15.0]),
        np.array([0, 20_000_000]),
        np.array([300.0, 50.0]),
        np.array([-1, 20_000_000, 60_000_000, 200_000_000], dtype=np.int64),
    )
    assert out[0] == 5.0 and out[3] == 15.0
    assert out[1] == pytest.approx(5.0 + 6.0)
    assert out[2] == pytest.approx(5.0 + 6.0 + 4.0 * 0.5)


def test_no_knot_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one knot"):
        _core.shape_curve(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), np.zeros(0), np.zeros(1, np.int64))
