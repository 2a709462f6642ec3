"""Student's t distribution without scipy: table quantiles, closed-form CDFs, and interval coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastmeter.analysis.stats import mean_ci, t_cdf, t_quantile, t_two_sided_p, welch
from fastmeter.errors import ConfigError

# Two-sided critical values from printed t tables (e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2), 3-4 decimals.
TABLE = [
    (0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 3, 3.182), (0.975, 4, 2.776), (0.975, 5, 2.571),
    (0.975, 10, 2.228), (0.975, 30, 2.042), (0.975, 100, 1.984), (0.995, 1, 63.657), (0.995, 4, 4.604),
    (0.995, 10, 3.169), (0.95, 1, 6.314), (0.95, 7, 1.895), (0.90, 20, 1.325), (0.999, 5, 5.893),
]


@pytest.mark.parametrize(("p", "df", "expected"), TABLE)
def test_quantile_matches_printed_tables(p: float, df: int, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, abs=6e-4)
    assert t_quantile(1 - p, df) == pytest.approx(-expected, abs=6e-4)


def test_infinite_df_is_the_normal_distribution() -> None:
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)
    assert t_quantile(0.975, 1e6) == pytest.approx(1.959966, abs=1e-5)


@given(st.floats(-1e3, 1e3))
def test_cdf_closed_forms_for_one_and_two_df(t: float) -> None:
    assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)  # Cauchy
    assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    assert t_two_sided_p(t, 1) == pytest.approx(2 * min(t_cdf(t, 1), 1 - t_cdf(t, 1)), abs=1e-12)


@given(st.floats(0.001, 0.999), st.floats(0.5, 200))
def test_quantile_inverts_cdf_for_fractional_df(p: float, df: float) -> None:
    assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, abs=1e-10)


def test_bad_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="0 < p < 1"):
        t_quantile(1.0, 3)
    with pytest.raises(ConfigError, match="degrees of freedom"):
        t_cdf(1.0, 0)
    with pytest.raises(ConfigError, match="at least 2 runs"):
        welch([1.0], [1.0, 2.0])


def test_mean_ci_known_values() -> None:
    e = mean_ci([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2  # t_{0.975,3} * sd / sqrt(n)
    assert (e.n, e.mean) == (4, 2.5)
    assert (e.ci_low, e.ci_high) == pytest.approx((2.5 - half, 2.5 + half), rel=1e-12)
    one = mean_ci([5.0, None, math.nan])  # missing figures are skipped
    assert one.n == 1 and one.mean == 5.0 and math.isnan(one.ci_low)


@pytest.mark.parametrize("n", [3, 5, 10])
def test_ci_covers_the_true_mean_95_percent_of_the_time(n: int) -> None:
    rng = np.random.default_rng(20240 + n)
    trials = 4000
    covered = 0
    for x in rng.normal(10.0, 3.0, size=(trials, n)):
        e = mean_ci(x.tolist())
        covered += e.ci_low <= 10.0 <= e.ci_high
    # Binomial(4000, 0.95) has sd 0.0034: +-4 sd.
    assert abs(covered / trials - 0.95) < 0.014


def test_welch_false_positive_rate_is_five_percent_and_power_is_high() -> None:
    rng = np.random.default_rng(7)
    trials = 3000
    same = sum(welch(rng.normal(0, 1, 4).tolist(), rng.normal(0, 3, 3).tolist()).significant for _ in range(trials))
    assert abs(same / trials - 0.05) < 0.016  # unequal variances and sizes: Welch keeps its level
    shifted = sum(welch(rng.normal(0, 1, 5).tolist(), rng.normal(4, 1, 5).tolist()).significant for _ in range(500))
    assert shifted / 500 > 0.99


def test_welch_matches_hand_computation() -> None:
    d = welch([1.0, 2.0, 3.0], [2.0, 3.0, 4.5])
    va, vb = 1.0, 1.5833333333333333
    se = math.sqrt(va / 3 + vb / 3)
    df = (va / 3 + vb / 3) ** 2 / ((va / 3) ** 2 / 2 + (vb / 3) ** 2 / 2)
    assert d.diff == pytest.approx(7 / 6)
    assert d.t == pytest.approx((7 / 6) / se) and d.df == pytest.approx(df)
    assert d.p_value == pytest.approx(t_two_sided_p(d.t, df))
    assert not d.significant
