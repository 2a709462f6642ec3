"""Arrival processes: seeded determinism and the mean rate / dispersion of Poisson and gamma gaps."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fastmeter.errors import ConfigError
from fastmeter.load.arrivals import arrival_offsets_s, arrival_times_s


def test_same_seed_same_times_other_seed_differs() -> None:
    a = arrival_times_s(3000, 20.0, 0.5, seed=7)
    assert a == arrival_times_s(3000, 20.0, 0.5, seed=7)
    assert a != arrival_times_s(3000, 20.0, 0.5, seed=8)
    assert a[0] == 0.0 and all(x <= y for x, y in itertools.pairwise(a))


@pytest.mark.parametrize("burstiness", [0.25, 1.0, 4.0])
def test_mean_rate_and_coefficient_of_variation(burstiness: float) -> None:
    n, rate = 40_000, 50.0
    gaps = np.diff(arrival_times_s(n + 1, rate, burstiness, seed=1))
    # Gamma(k, 1/(rate k)): mean 1/rate, coefficient of variation 1/sqrt(k). 5 standard errors each.
    se_mean = 1.0 / (rate * math.sqrt(burstiness * n))
    assert abs(gaps.mean() - 1.0 / rate) < 5 * se_mean
    cv = gaps.std() / gaps.mean()
    assert abs(cv - 1.0 / math.sqrt(burstiness)) < 0.05 / math.sqrt(burstiness)


def test_infinite_rate_is_all_at_zero() -> None:
    assert arrival_times_s(5, math.inf, 1.0) == [0.0] * 5


def test_poisson_counts_in_windows_have_poisson_variance() -> None:
    times = np.array(arrival_times_s(60_000, 100.0, 1.0, seed=3))
    counts = np.bincount((times // 1.0).astype(int))[:-1]  # whole 1 s windows: mean = variance = 100
    assert abs(counts.mean() - 100) < 5 * math.sqrt(100 / len(counts))
    assert 0.8 < counts.var() / counts.mean() < 1.2


@pytest.mark.parametrize(
    "rate,burstiness", [(0.0, 1.0), (-1.0, 1.0), (math.nan, 1.0), (1.0, 0.0), (1.0, math.inf)]
)
def test_bad_rates_raise_config_error(rate: float, burstiness: float) -> None:
    with pytest.raises(ConfigError, match="rate|burstiness"):
        next(arrival_offsets_s(rate, burstiness))
