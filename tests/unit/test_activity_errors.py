"""Bad input to activity attribution is one ConfigError saying what to do."""

from __future__ import annotations

import numpy as np
import pytest

from fastmeter.activity import attribute_activity
from fastmeter.errors import ConfigError

T = np.array([0, 100, 200, 300], dtype=np.int64)
E = np.array([0.0, 1.0, 2.0, 3.0])
ONE = {"chunk_offsets": np.array([0, 1]), "chunk_t_ns": np.array([150]), "chunk_tokens": np.array([1])}


def call(**over: object):
    args = {"knot_t_ns": np.array([100, 200]), "prompt_tokens": np.array([5]), **ONE, **over}
    return attribute_activity(T, E, args.pop("knot_t_ns"), np.array([50]), np.array([250]), np.array([150]), **args)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"knot_t_ns": np.array([120])}, "evaluate the curve there"),
        ({"prompt_tokens": np.array([5, 6])}, "one count >= 0 per request"),
        ({"prompt_tokens": np.array([-1])}, "one count >= 0 per request"),
        ({"prompt_tokens": np.array([5.5])}, "prompt_tokens must hold integers"),
        ({"chunk_t_ns": np.array([400])}, "outside its request"),
    ],
)
def test_bad_input_is_one_clear_error(over: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call(**over)


def test_a_run_too_short_to_fit_is_time_share_and_says_why() -> None:
    r = call()
    assert r.attribution.method == "time-share"
    assert r.fit.rejected is not None and r.fit.rejected.code == "activity_fit_too_few_intervals"
    assert r.attribution.energy_j.sum() + r.attribution.idle_j == pytest.approx(3.0)
