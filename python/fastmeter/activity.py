"""Activity-informed per-request attribution: energy finer than the sensor's update period.

From the run's own request events it builds what the server was doing at every instant (prefill tokens/s, decode
tokens/s, sequences in flight), fits a power model to the energy the sensor measured between its updates
(`activity_fit`), shapes the energy inside each update interval by the fitted model (native kernel
`_core.shape_curve`, conserving every measured delta exactly) and splits each piece of the shaped curve among the
requests by their own terms of the model. docs/attribution.md ("Activity") states every rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastmeter.activity_fit import ActivityFit, fit_power_model
from fastmeter.attribution import Attribution, _chunks, _first_token, _int_array, _sorted_unique, attribute
from fastmeter.errors import ConfigError

S_PER_NS = 1e-9
PREFILL, DECODE, SEQ = 0, 1, 2  # activity terms, in the order of activity_fit.COEFFICIENTS after idle_w


@dataclass(frozen=True)
class ActivityAttribution:
    """The attribution (method "activity", or "time-share" when the fit was rejected: `fit.rejected` says why) and
    the fit behind it."""

    attribution: Attribution
    fit: ActivityFit


@dataclass(frozen=True)
class _Segments:
    """Constant-rate pieces of activity: request, cell range [i0, i1) on the grid, term, rate (per second)."""

    request: np.ndarray
    i0: np.ndarray
    i1: np.ndarray
    term: np.ndarray
    rate: np.ndarray


def attribute_activity(
    t_ns: Any,
    energy_j: Any,
    knot_t_ns: Any,
    start_ns: Any,
    end_ns: Any,
    first_token_ns: Any,
    *,
    chunk_offsets: Any,
    chunk_t_ns: Any,
    chunk_tokens: Any,
    prompt_tokens: Any,
    idle_power_w: float | Mapping[str, float] | None = None,
    bound_j: Any = None,
    update_period_s: float | None = None,
    backend: str = "native",
) -> ActivityAttribution:
    """Attribute the curve `E(t_ns) = energy_j` (as for `attribution.attribute`, evaluated at every event instant)
    by activity. `knot_t_ns`: the instants at which the sensor's energy updated (change points) inside the span;
    the deltas of E between them are what the model is fitted to and what shaping conserves. `prompt_tokens`: per
    request. The time-share attribution of the same curve is the fallback, and its `uncertainty_j` (with `bound_j`)
    is the measured curve's part of the activity uncertainty."""
    share = attribute(
        t_ns,
        energy_j,
        start_ns,
        end_ns,
        first_token_ns,
        method="time-share",
        update_period_s=update_period_s,
        idle_power_w=idle_power_w,
        bound_j=bound_j,
        backend=backend,
    )
    t = _int_array("t_ns", t_ns)
    e = np.asarray(energy_j, dtype=np.float64)
    start, end = _int_array("start_ns", start_ns), _int_array("end_ns", end_ns)
    ft, has_ft = _first_token(first_token_ns, len(start))
    ft = np.where(has_ft, ft, end)  # no first token: all of it is prefill, none of it prefill activity
    off, ct, ck = _chunks(chunk_offsets, chunk_t_ns, chunk_tokens, start, end, "token-weighted")
    prompt = _int_array("prompt_tokens", prompt_tokens)
    if len(prompt) != len(start) or np.any(prompt < 0):
        raise ConfigError(f"prompt_tokens must hold one count >= 0 per request ({len(start)})")
    knots = _int_array("knot_t_ns", knot_t_ns)
    knots = _sorted_unique(np.concatenate([t[:1], knots[(knots > t[0]) & (knots < t[-1])], t[-1:]]))
    at = np.minimum(np.searchsorted(t, knots), len(t) - 1)  # np.isin: seconds per million on numpy 2.x
    if np.any(t[at] != knots):
        raise ConfigError("every knot_t_ns inside the curve's span must be one of its t_ns: evaluate the curve there")

    chunks = _token_chunks(off, ct, ck)
    step_ns = _decode_step_ns(len(start), chunks[0], chunks[1])
    # Without any decode step to go by, the prefill is spread over the whole wait for the first token.
    step = np.where(np.isnan(step_ns), (ft - start).astype(np.float64), step_ns).astype(np.int64)
    prefill_from = np.maximum(start, ft - step)
    grid = _sorted_unique(np.concatenate([t, knots, prefill_from]))
    segs = _segments(grid, start, end, ft, has_ft, prefill_from, chunks, prompt)
    dt_s = np.diff(grid) * S_PER_NS
    rates = np.zeros((3, len(grid)))  # per cell: total rate of each term
    for k in (PREFILL, DECODE, SEQ):
        m = segs.term == k
        rates[k] = _cell_sums(len(grid), segs.i0[m], segs.i1[m], segs.rate[m])
    cells = rates[:, :-1]
    # Cumulative integral of each term at every grid point, so any span of cells integrates by a difference.
    cum = np.concatenate([np.zeros((4, 1)), np.cumsum(np.vstack([dt_s, cells * dt_s]), axis=1)], axis=1)
    ki = np.searchsorted(grid, knots)
    design = (cum[:, ki[1:]] - cum[:, ki[:-1]]).T
    measured = e[np.searchsorted(t, knots)]
    # The edge intervals start or end at the span edge, not at a sensor update: not a measurement of their own.
    interior = np.ones(len(knots) - 1, dtype=bool)
    interior[[0, -1]] = False
    fit = fit_power_model(design[interior], np.diff(measured)[interior], knots[1:][interior])
    if fit.rejected is not None:
        return ActivityAttribution(share, fit)

    tl = _Timeline(grid, cells, segs, knots, measured, start, end, ft, backend)
    energy, prefill, idle_j = tl.split(fit.coef)
    rel = fit.relative_rms if np.isfinite(fit.relative_rms) else np.nan
    a = Attribution(
        method="activity",
        energy_j=energy,
        prefill_energy_j=prefill,
        decode_energy_j=energy - prefill,
        net_energy_j=energy - share.idle_power_w * share.attributed_s
        if share.idle_power_w is not None
        else np.full(len(energy), np.nan),
        uncertainty_j=share.uncertainty_j + _coef_sensitivity_j(tl, fit, energy) + np.abs(energy) * rel,
        attributed_s=share.attributed_s,
        idle_j=idle_j,
        idle_s=share.idle_s,
        total_j=share.total_j,
        span_s=share.span_s,
        update_period_s=share.update_period_s,
        idle_power_w=share.idle_power_w,
        requests_outside_span=share.requests_outside_span,
        uncertainty="heuristic",
        heuristic_points=share.heuristic_points,
    )
    return ActivityAttribution(a, fit)


class _Timeline:
    """The run's activity on its grid of cuts, ready to be shaped and split for any coefficients."""

    def __init__(self, grid, cells, segs, knots, measured, start, end, ft, backend: str) -> None:  # noqa: ANN001
        self.grid, self.cells, self.segs, self.knots, self.measured = grid, cells, segs, knots, measured
        self.backend = backend
        n_active = _cell_sums(len(grid), np.searchsorted(grid, start), np.searchsorted(grid, end), np.ones(len(start)))
        self.n_active = n_active[:-1]
        self.i_start, self.i_end, self.i_ft = (np.searchsorted(grid, x) for x in (start, end, ft))

    def split(self, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Per-request energy and prefill energy, and idle energy, with the curve shaped by these coefficients."""
        segs, n_active, n = self.segs, self.n_active, len(self.i_start)
        shaped = _shape(
            self.knots, self.measured, self.grid[:-1], coef[0] + coef[1:] @ self.cells, self.grid, self.backend
        )
        de = np.diff(shaped)
        weight = coef[1 + segs.term] * segs.rate
        busy = n_active > 0
        w_total = np.where(busy, coef[0], 0.0) + _cell_sums(len(self.grid), segs.i0, segs.i1, weight)[:-1]
        ok = w_total > 0
        rho = np.divide(de, w_total, out=np.zeros_like(de), where=ok)  # J per unit of model weight
        # Idle power is everyone's: split equally among the requests in flight; where the model predicts nothing
        # at all the whole cell is split so (time-share), so no measured joule is left unassigned.
        sigma = np.zeros_like(de)
        np.divide(rho * coef[0], n_active, out=sigma, where=ok & busy)
        np.divide(de, n_active, out=sigma, where=~ok & busy)
        c_rho, c_sigma = _prefix(rho), _prefix(sigma)
        i_start, i_end, i_ft = self.i_start, self.i_end, self.i_ft
        energy = _per_request(n, segs, weight, c_rho, None) + c_sigma[i_end] - c_sigma[i_start]
        prefill = _per_request(n, segs, weight, c_rho, i_ft) + c_sigma[np.minimum(i_ft, i_end)] - c_sigma[i_start]
        return energy, prefill, float(de[~busy].sum())


def _coef_sensitivity_j(tl: _Timeline, fit: ActivityFit, energy: np.ndarray) -> np.ndarray:
    """Per request, the most its energy moves when one coefficient goes to either end of its 95 % interval (the
    others kept): the fit's uncertainty as each request sees it."""
    out = np.zeros(len(energy))
    for j in range(len(fit.coef)):
        for end in (fit.ci95_lo[j], fit.ci95_hi[j]):
            if not np.isfinite(end):  # a term the run never exercised moves nobody
                continue
            coef = fit.coef.copy()
            coef[j] = end
            out = np.maximum(out, np.abs(tl.split(coef)[0] - energy))
    return out


def _token_chunks(off: np.ndarray, ct: np.ndarray, ck: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(owner, t_ns, tokens) of the token-carrying chunks, chunks of one request at one instant merged into one
    (as for token-weighted); in request order, then time order."""
    owner = np.repeat(np.arange(len(off) - 1), np.diff(off))
    keep = ck > 0
    owner, t, tokens = owner[keep], ct[keep], ck[keep]
    if not len(t):
        return owner, t, tokens.astype(np.float64)
    first = np.r_[True, (owner[1:] != owner[:-1]) | (t[1:] != t[:-1])]
    at = np.flatnonzero(first)
    return owner[at], t[at], np.add.reduceat(tokens.astype(np.float64), at)


def _decode_step_ns(n: int, owner: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per request, the median gap between its token-carrying chunks: the server's step, in which its prefill ran
    just before the first token (the run's median for a request with fewer than two; NaN when no request has)."""
    same = owner[1:] == owner[:-1]
    gap_owner, gap = owner[1:][same], (t[1:] - t[:-1])[same].astype(np.float64)
    order = np.lexsort((gap, gap_owner))
    gap_owner, gap = gap_owner[order], gap[order]
    count = np.bincount(gap_owner, minlength=n)
    begin = np.concatenate([[0], np.cumsum(count)[:-1]])
    out = np.full(n, np.nan)
    has = count > 0
    lo, hi = begin[has] + (count[has] - 1) // 2, begin[has] + count[has] // 2
    out[has] = (gap[lo] + gap[hi]) / 2  # np.median's middle pair
    if has.any():
        out[~has] = float(np.median(out[has]))
    return out


def _segments(grid, start, end, ft, has_ft, prefill_from, chunks, prompt) -> _Segments:  # noqa: ANN001
    """Every request's constant-rate activity: its prompt's tokens over [prefill_from, first token]; each later
    token-carrying chunk's tokens since the previous one (the first token is the prefill step's output); one
    sequence in flight over [prefill_from, end] (over [start, end] without a first token)."""
    owner, t, tokens = chunks
    lo = np.where(has_ft, prefill_from, start)
    r = np.arange(len(start))
    pre = has_ft & (ft > lo) & (prompt > 0)
    same = owner[1:] == owner[:-1]
    seq = end > lo
    parts = [  # (request, from, to, term, rate)
        (r[pre], lo[pre], ft[pre], PREFILL, prompt[pre] / ((ft[pre] - lo[pre]) * S_PER_NS)),
        (
            owner[1:][same],
            t[:-1][same],
            t[1:][same],
            DECODE,
            tokens[1:][same] / ((t[1:][same] - t[:-1][same]) * S_PER_NS),
        ),
        (r[seq], lo[seq], end[seq], SEQ, np.ones(int(seq.sum()))),
    ]
    return _Segments(
        np.concatenate([p[0] for p in parts]).astype(np.int64),
        np.searchsorted(grid, np.concatenate([p[1] for p in parts]).astype(np.int64)),
        np.searchsorted(grid, np.concatenate([p[2] for p in parts]).astype(np.int64)),
        np.concatenate([np.full(len(p[0]), p[3], dtype=np.int64) for p in parts]),
        np.concatenate([p[4] for p in parts]).astype(np.float64),
    )


def _cell_sums(n: int, i0: np.ndarray, i1: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Per grid cell, the sum of `value` over the ranges [i0, i1) that cover it (difference array). A cell no range
    covers is exactly 0: the running sum's rounding residue there would read as a weight nobody holds."""
    diff = np.bincount(i0, weights=value, minlength=n + 1) - np.bincount(i1, weights=value, minlength=n + 1)
    count = np.bincount(i0, minlength=n + 1) - np.bincount(i1, minlength=n + 1)
    return np.where(np.cumsum(count)[:n] > 0, np.cumsum(diff)[:n], 0.0)


def _prefix(x: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(x)])


def _per_request(n: int, segs: _Segments, weight: np.ndarray, c_rho: np.ndarray, limit: np.ndarray | None):
    """Sum over each request's segments of weight x (energy per unit weight over the segment's cells), cells cut off
    at `limit[request]` (exclusive) when given."""
    i0, i1 = segs.i0, segs.i1
    if limit is not None:
        lim = limit[segs.request]
        i0, i1 = np.minimum(i0, lim), np.minimum(i1, lim)
    return np.bincount(segs.request, weights=weight * (c_rho[i1] - c_rho[i0]), minlength=n)


def _shape(knots, measured, power_t, power_w, query, backend: str) -> np.ndarray:  # noqa: ANN001
    if backend == "native":
        from fastmeter import _core

        return np.asarray(_core.shape_curve(knots, measured, power_t, power_w, query))
    from fastmeter.reference.shape import shape_curve

    return np.asarray(
        shape_curve(knots.tolist(), measured.tolist(), power_t.tolist(), power_w.tolist(), query.tolist())
    )
