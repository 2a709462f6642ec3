"""Bad attribution input fails with one ConfigError that names the problem."""

from __future__ import annotations

import numpy as np
import pytest

from fastmeter.attribution import attribute
from fastmeter.errors import ConfigError

T = np.array([0, 10, 20], dtype=np.int64)
E = np.array([0.0, 1.0, 2.0])
START, END = np.array([1, 5]), np.array([4, 15])
CHUNKS = {"chunk_offsets": [0, 1, 2], "chunk_t_ns": [3, 10], "chunk_tokens": [1, 2]}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"t_ns": [0, 20, 10]}, "strictly increasing"),
        ({"t_ns": [0, 10, 10]}, "strictly increasing"),
        ({"t_ns": [0.0, 10.0, 20.0]}, "integers"),
        ({"t_ns": [0, 10]}, "same length"),
        ({"t_ns": [], "energy_j": []}, "empty"),
        ({"energy_j": [0.0, 2.0, 1.0]}, "must not decrease"),
        ({"energy_j": [0.0, np.nan, 1.0]}, "NaN"),
        ({"end_ns": [4, 3]}, "ends before it starts"),
        ({"end_ns": [4]}, "same length"),
        ({"first_token_ns": [2]}, "one entry per request"),
        ({"first_token_ns": [0, None]}, "outside"),
        ({"method": "energy-share"}, "method"),
        ({"backend": "gpu"}, "backend"),
        ({"method": "token-weighted"}, "needs chunk_offsets"),
        ({"chunk_offsets": [0, 2]}, "together"),
        ({**CHUNKS, "chunk_offsets": [0, 1]}, "one more entry"),
        ({**CHUNKS, "chunk_offsets": [0, 2, 1]}, "one more entry"),
        ({**CHUNKS, "chunk_tokens": [1]}, "same length"),
        ({**CHUNKS, "chunk_tokens": [1, -2]}, ">= 0"),
        ({**CHUNKS, "chunk_t_ns": [3, 16]}, "outside its request"),
        ({**CHUNKS, "chunk_offsets": [0, 0, 2], "chunk_t_ns": [12, 10]}, "sorted within each request"),
        ({"update_period_s": -0.1}, "update_period_s"),
        ({"update_period_s": float("inf")}, "update_period_s"),
        ({"bound_j": [0.0, 1.0]}, "one entry per curve point"),
        ({"bound_j": [0.0, float("inf"), 1.0]}, "finite and >= 0"),
        ({"bound_j": [0.0, -1.0, 1.0]}, "finite and >= 0"),
        ({"idle_power_w": float("inf")}, "idle_power_w"),
        ({"idle_power_w": {"gpu0": -5.0}}, "idle_power_w"),
    ],
)
def test_bad_input_raises_config_error(kwargs, match):
    args = {"t_ns": T, "energy_j": E, "start_ns": START, "end_ns": END, **kwargs}
    with pytest.raises(ConfigError, match=match):
        attribute(**args)


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        attribute(T, E, START, END[::-1])
