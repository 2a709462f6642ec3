"""The power model behind activity attribution: a non-negative, outlier-robust least-squares fit of

    P(t) = idle_w + prefill_j_per_token * (prefill tokens/s)(t) + decode_j_per_token * (decode tokens/s)(t)
           + seq_w * (sequences in flight)(t)

to the energy the sensor measured between its updates, with the statistics that say whether to trust it
(docs/attribution.md, "Activity"). numpy only: with 4 coefficients the exact non-negative least-squares solution is
found by trying every set of free coefficients.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastmeter.validity import (
    ACTIVITY_MAX_CONDITION,
    ACTIVITY_MIN_INTERVALS_PER_COEF,
    ACTIVITY_MIN_R2,
    Reason,
    Verdict,
)

COEFFICIENTS = ("idle_w", "prefill_j_per_token", "decode_j_per_token", "seq_w")
# Huber's constant: 95% efficiency on Gaussian residuals while capping the pull of an outlier interval.
HUBER_K = 1.345
ROBUST_ITERATIONS = 8
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class ActivityFit:
    """The fitted model and how good it is. `coef`/`ci95_lo`/`ci95_hi` follow COEFFICIENTS; `residuals_j` and
    `interval_end_ns` have one entry per sensor interval used. `rejected` is None when the fit may shape energy,
    else the Reason it may not (activity attribution then falls back to time-share)."""

    coef: np.ndarray
    ci95_lo: np.ndarray
    ci95_hi: np.ndarray
    r2: float
    condition: float
    rms_residual_j: float
    relative_rms: float  # rms residual / mean measured interval energy
    residuals_j: np.ndarray
    interval_end_ns: np.ndarray
    rejected: Reason | None

    def to_dict(self) -> dict[str, Any]:
        """run.json's `attribution.activity_fit` (NaN becomes None there, as everywhere in run.json)."""
        return {
            "model": "P = idle_w + prefill_j_per_token*prefill_tok_s + decode_j_per_token*decode_tok_s + seq_w*seqs",
            "coefficients": {
                name: {"value": _num(c), "ci95": [_num(lo), _num(hi)]}
                for name, c, lo, hi in zip(COEFFICIENTS, self.coef, self.ci95_lo, self.ci95_hi)
            },
            "r2": _num(self.r2),
            "condition": _num(self.condition),
            "rms_residual_j": _num(self.rms_residual_j),
            "relative_rms": _num(self.relative_rms),
            "intervals": len(self.residuals_j),
            "interval_end_ns": [int(t) for t in self.interval_end_ns],
            "residuals_j": [_num(r) for r in self.residuals_j],
            "used": self.rejected is None,
            "rejected": None if self.rejected is None else self.rejected.to_dict(),
        }


def fit_power_model(design: np.ndarray, energy_j: np.ndarray, interval_end_ns: np.ndarray) -> ActivityFit:
    """Fit `energy_j[i] ~ design[i] @ coef` with coef >= 0. Row i of `design` integrates each activity term over
    sensor interval i (seconds, prefill tokens, decode tokens, sequence-seconds); energy_j[i] is what the sensor
    measured over it."""
    n, p = design.shape
    norms = np.sqrt((design**2).sum(axis=0))
    # A term that never occurs (no prefill seen, say) carries no information and must not count as collinear.
    used = norms > 0
    scaled = design[:, used] / norms[used]
    condition = float(np.linalg.cond(scaled)) if n >= used.sum() > 0 else math.inf
    coef = np.zeros(p)
    weights = np.ones(n)
    for _ in range(ROBUST_ITERATIONS):
        coef_used = _nnls(scaled * weights[:, None] ** 0.5, energy_j * weights**0.5)
        coef = np.zeros(p)
        coef[used] = coef_used / norms[used]
        resid = energy_j - design @ coef
        # Huber weights from the median absolute deviation: an interval the model misses wildly (a sensor glitch)
        # is down-weighted instead of bending the fit.
        scale = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) if n else 0.0
        if scale <= 0:
            break
        u = np.abs(resid) / (HUBER_K * scale)
        weights = np.where(u <= 1, 1.0, 1.0 / np.maximum(u, 1e-300))
    resid = energy_j - design @ coef
    rss = float(resid @ resid)
    tss = float(((energy_j - energy_j.mean()) ** 2).sum()) if n else 0.0
    r2 = 1.0 - rss / tss if tss > 0 else math.nan
    dof = n - int(used.sum())
    sigma2 = rss / dof if dof > 0 else math.nan
    half = np.full(p, math.nan)
    if dof > 0 and math.isfinite(condition):
        cov = np.linalg.pinv(scaled.T @ (scaled * weights[:, None])) * sigma2
        half[used] = Z_95 * np.sqrt(np.maximum(np.diag(cov), 0.0)) / norms[used]
    half[~used] = math.nan  # never observed: its coefficient is unknown, not 0 +- 0
    rms = math.sqrt(rss / n) if n else math.nan
    mean_e = float(energy_j.mean()) if n else math.nan
    fit = ActivityFit(
        coef=coef,
        ci95_lo=np.maximum(coef - half, 0.0),
        ci95_hi=coef + half,
        r2=r2,
        condition=condition,
        rms_residual_j=rms,
        relative_rms=rms / mean_e if mean_e > 0 else math.nan,
        residuals_j=resid,
        interval_end_ns=np.asarray(interval_end_ns, dtype=np.int64),
        rejected=None,
    )
    return _with_verdict(fit, n, p)


def _with_verdict(fit: ActivityFit, n: int, p: int) -> ActivityFit:
    need = ACTIVITY_MIN_INTERVALS_PER_COEF * p
    why = None
    if n < need:
        why = Reason(
            "activity_fit_too_few_intervals",
            f"activity attribution fell back to time-share: {n} sensor intervals, the power model needs {need}; "
            "run longer",
        )
    elif not fit.condition <= ACTIVITY_MAX_CONDITION:
        why = Reason(
            "activity_fit_ill_conditioned",
            f"activity attribution fell back to time-share: activity terms move together (condition "
            f"{fit.condition:.3g} > {ACTIVITY_MAX_CONDITION:g}), so the model cannot tell their costs apart; vary "
            "prompt lengths and concurrency",
        )
    elif not fit.r2 >= ACTIVITY_MIN_R2:
        why = Reason(
            "activity_fit_poor",
            f"activity attribution fell back to time-share: the power model explains R^2 = {fit.r2:.3g} of the "
            f"measured energy's variation (< {ACTIVITY_MIN_R2}); power does not follow the observed activity",
        )
    if why is None:
        return fit
    return ActivityFit(**{**fit.__dict__, "rejected": Reason(why.code, why.message, Verdict.DEGRADED)})


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact non-negative least squares for a few columns: the best of the unconstrained solutions on every subset
    of free columns that come out non-negative (the optimum is one of them, by the KKT conditions)."""
    p = a.shape[1]
    best, best_rss = np.zeros(p), float(b @ b)
    for k in range(1, p + 1):
        for cols in itertools.combinations(range(p), k):
            x, *_ = np.linalg.lstsq(a[:, cols], b, rcond=None)
            if np.any(x < 0):
                continue
            r = b - a[:, cols] @ x
            rss = float(r @ r)
            if rss < best_rss:
                best, best_rss = np.zeros(p), rss
                best[list(cols)] = x
    return best


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
