"""Small-sample statistics for comparing benchmark runs: Student's t distribution (no scipy), the mean with its
confidence interval, Welch's t-test, and a single run tested against repeated runs.

The t distribution's CDF comes from the regularized incomplete beta function, I_x(df/2, 1/2) with
x = df / (df + t^2), evaluated by its continued fraction (modified Lentz); it accepts non-integer degrees of
freedom, which Welch's test needs. Quantiles invert the CDF by bisection, exact to double precision.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from fastmeter.errors import ConfigError

_EPS = 1e-15
_TINY = 1e-300
# Beyond this many degrees of freedom the t and normal distributions agree to better than 1e-9.
_NORMAL_DF = 1e10


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), converging for x < (a+1)/(a+b+2)."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
                    -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float, one_minus_x: float | None = None) -> float:
    """Regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1. Pass `one_minus_x` when
    it is known more exactly than 1 - x (near x = 1 the subtraction loses digits)."""
    y = 1.0 - x if one_minus_x is None else one_minus_x
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, y) / b


def _tail(t: float, df: float) -> float:
    """P(|T| >= |t|) = I_x(df/2, 1/2) with x = df / (df + t^2), 1 - x computed directly."""
    return betainc(df / 2.0, 0.5, df / (df + t * t), t * t / (df + t * t))


def _check_df(df: float) -> None:
    if not df > 0:
        raise ConfigError(f"degrees of freedom must be > 0, got {df!r}")


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom (df may be fractional or math.inf)."""
    _check_df(df)
    if df > _NORMAL_DF:
        return NormalDist().cdf(t)
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * _tail(t, df)  # P(T > |t|)
    return 1.0 - tail if t > 0 else tail


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|)."""
    _check_df(df)
    if df > _NORMAL_DF:
        return 2.0 * NormalDist().cdf(-abs(t))
    if math.isinf(t):
        return 0.0
    return _tail(t, df)


@functools.lru_cache(maxsize=1024)  # intervals ask for the same few (level, n - 1) pairs again and again
def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, for 0 < p < 1 (e.g. t_quantile(0.975, 4) = 2.776...)."""
    _check_df(df)
    if not 0.0 < p < 1.0:
        raise ConfigError(f"a quantile needs 0 < p < 1, got {p!r}")
    if df > _NORMAL_DF:
        return NormalDist().inv_cdf(p)
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    hi = 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    lo = 0.0
    for _ in range(200):  # bisection: the bracket halves each step, so 200 steps reach adjacent doubles
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Estimate:
    """Mean of n values with its confidence interval (Student's t; NaN bounds when n < 2)."""

    n: int
    mean: float
    sd: float  # sample standard deviation (n - 1 denominator); NaN when n < 2
    ci_low: float
    ci_high: float
    level: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2.0


def finite(values: Sequence[float | None]) -> list[float]:
    """The values that are numbers (None and NaN are runs that did not record the figure)."""
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _mean_var(x: Sequence[float]) -> tuple[float, float]:
    n = len(x)
    mean = math.fsum(x) / n
    var = math.fsum((v - mean) ** 2 for v in x) / (n - 1) if n > 1 else math.nan
    return mean, var


def mean_ci(values: Sequence[float], level: float = 0.95) -> Estimate:
    """Mean and `level` confidence interval mean +- t_{(1+level)/2, n-1} * sd / sqrt(n)."""
    x = finite(values)
    if not x:
        return Estimate(0, math.nan, math.nan, math.nan, math.nan, level)
    mean, var = _mean_var(x)
    if len(x) < 2:
        return Estimate(1, mean, math.nan, math.nan, math.nan, level)
    sd = math.sqrt(var)
    half = t_quantile(0.5 + level / 2.0, len(x) - 1) * sd / math.sqrt(len(x))
    return Estimate(len(x), mean, sd, mean - half, mean + half, level)


@dataclass(frozen=True)
class Difference:
    """Candidate minus baseline, with a confidence interval from a noise estimate (or none)."""

    test: str  # "welch", "single-run" or "none"
    diff: float
    ci_low: float  # NaN when test == "none"
    ci_high: float
    t: float
    df: float
    p_value: float
    level: float

    @property
    def significant(self) -> bool:
        """The interval excludes zero (two-sided p < 1 - level); never true without a noise estimate."""
        return self.test != "none" and (self.ci_low > 0.0 or self.ci_high < 0.0)


def _difference(test: str, diff: float, se: float, df: float, level: float) -> Difference:
    if se == 0.0:  # no spread at all: any difference is outside the (zero) noise
        p = 1.0 if diff == 0.0 else 0.0
        return Difference(test, diff, diff, diff, math.copysign(math.inf, diff) if diff else 0.0, df, p, level)
    t = diff / se
    half = t_quantile(0.5 + level / 2.0, df) * se
    return Difference(test, diff, diff - half, diff + half, t, df, t_two_sided_p(t, df), level)


def welch(baseline: Sequence[float], candidate: Sequence[float], level: float = 0.95) -> Difference:
    """Welch's unequal-variance t-test of mean(candidate) - mean(baseline); both need >= 2 values."""
    a, b = finite(baseline), finite(candidate)
    if len(a) < 2 or len(b) < 2:
        raise ConfigError("Welch's t-test needs at least 2 runs on each side")
    ma, va = _mean_var(a)
    mb, vb = _mean_var(b)
    qa, qb = va / len(a), vb / len(b)
    se = math.sqrt(qa + qb)
    # Welch-Satterthwaite degrees of freedom; with no spread on either side any df will do (see _difference).
    df = (qa + qb) ** 2 / (qa**2 / (len(a) - 1) + qb**2 / (len(b) - 1)) if se > 0 else math.inf
    return _difference("welch", mb - ma, se, df, level)


def single_run(repeated: Sequence[float], single: float, level: float = 0.95, *, single_is_candidate: bool = True
               ) -> Difference:
    """One run against repeated runs: is `single` a draw from their distribution? The spread of the repeated
    runs is the noise estimate: se = sd * sqrt(1 + 1/n), df = n - 1 (a prediction interval for one new run)."""
    x = finite(repeated)
    if len(x) < 2:
        raise ConfigError("a single run can be tested only against at least 2 repeated runs")
    mean, var = _mean_var(x)
    diff = single - mean if single_is_candidate else mean - single
    return _difference("single-run", diff, math.sqrt(var * (1.0 + 1.0 / len(x))), len(x) - 1, level)


def compare_samples(baseline: Sequence[float], candidate: Sequence[float], level: float = 0.95) -> Difference:
    """Welch when both sides have >= 2 runs; a single-run test when one side has one; no test when both have one."""
    a, b = finite(baseline), finite(candidate)
    if not a or not b:
        raise ConfigError("both sides need at least one run that recorded the metric")
    if len(a) >= 2 and len(b) >= 2:
        return welch(a, b, level)
    if len(a) >= 2:
        return single_run(a, b[0], level, single_is_candidate=True)
    if len(b) >= 2:
        return single_run(b, a[0], level, single_is_candidate=False)
    nan = math.nan
    return Difference("none", b[0] - a[0], nan, nan, nan, nan, nan, level)
