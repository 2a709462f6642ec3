"""The activity power-model fit on designs with known coefficients: recovery inside the reported confidence
intervals, non-negativity, robustness to a glitched interval, and each reason it refuses to be used."""

from __future__ import annotations

import numpy as np

from fastmeter.activity_fit import COEFFICIENTS, fit_power_model
from fastmeter.validity import ACTIVITY_MIN_INTERVALS_PER_COEF, Verdict


def design(n: int, rng: np.random.Generator) -> np.ndarray:
    """n 100 ms intervals: seconds, prefill tokens, decode tokens, sequence-seconds, varying independently."""
    seqs = rng.integers(0, 16, n) * 0.1
    return np.column_stack([np.full(n, 0.1), rng.integers(0, 3000, n), rng.integers(0, 200, n), seqs])


TRUE = np.array([80.0, 0.01, 0.3, 5.0])


def test_confidence_intervals_cover_the_true_coefficients_95_percent_of_the_time() -> None:
    covered, n_fits = np.zeros(4), 80
    for seed in range(n_fits):
        rng = np.random.default_rng(seed)
        a = design(200, rng)
        y = a @ TRUE + rng.normal(0, 0.5, len(a))
        fit = fit_power_model(a, y, np.arange(len(a)) * 100_000_000)
        assert fit.rejected is None and fit.r2 > 0.99
        assert np.all(fit.ci95_hi - fit.ci95_lo < 0.2 * TRUE)  # informative, not just wide
        covered += (fit.ci95_lo <= TRUE) & (TRUE <= fit.ci95_hi)
    # 95 % nominal; 80 fits put a calibrated interval's coverage above 0.87 with probability > 0.99.
    assert np.all(covered / n_fits >= 0.87), covered / n_fits
    np.testing.assert_allclose(fit.residuals_j, y - a @ fit.coef)
    d = fit.to_dict()
    assert list(d["coefficients"]) == list(COEFFICIENTS) and d["used"] and d["intervals"] == 200


def test_a_cost_the_data_cannot_support_is_zero_never_negative() -> None:
    rng = np.random.default_rng(4)
    a = design(120, rng)
    y = a @ np.array([80.0, 0.01, 0.3, 0.0]) + rng.normal(0, 2.0, len(a))
    fit = fit_power_model(a, y, np.arange(len(a)))
    assert np.all(fit.coef >= 0)
    assert fit.ci95_lo[3] == 0.0


def test_one_glitched_interval_does_not_bend_the_fit() -> None:
    rng = np.random.default_rng(5)
    a = design(100, rng)
    y = a @ TRUE + rng.normal(0, 0.3, len(a))
    y[17] += 300.0  # a sensor glitch: 3 kW for 100 ms
    fit = fit_power_model(a, y, np.arange(len(a)))
    np.testing.assert_allclose(fit.coef, TRUE, rtol=0.05)
    assert fit.residuals_j[17] > 250


def test_too_few_intervals_is_refused() -> None:
    rng = np.random.default_rng(6)
    n = ACTIVITY_MIN_INTERVALS_PER_COEF * 4 - 1
    a = design(n, rng)
    fit = fit_power_model(a, a @ TRUE, np.arange(n))
    assert fit.rejected is not None and fit.rejected.code == "activity_fit_too_few_intervals"
    assert fit.rejected.verdict is Verdict.DEGRADED and "run longer" in fit.rejected.message


def test_terms_that_move_together_are_refused() -> None:
    rng = np.random.default_rng(7)
    a = design(100, rng)
    a[:, 2] = a[:, 3] * 100.0  # every sequence decodes one token per 10 ms step: decode rate = seqs / step
    fit = fit_power_model(a, a @ TRUE, np.arange(100))
    assert fit.rejected is not None and fit.rejected.code == "activity_fit_ill_conditioned"


def test_power_that_ignores_the_activity_is_refused() -> None:
    rng = np.random.default_rng(8)
    a = design(100, rng)
    y = 8.0 + rng.normal(0, 3.0, 100)  # unrelated to any term
    fit = fit_power_model(a, y, np.arange(100))
    assert fit.rejected is not None and fit.rejected.code == "activity_fit_poor"
    assert fit.r2 < 0.5
