"""Pure-Python twin of csrc/fastmeter/attribute.cpp: the rules of docs/attribution.md written out directly.

Quadratic (every elementary interval visits every request), so only for small inputs. It takes the same flat
arrays as the native kernel, assumes they were validated by fastmeter.attribution, and returns the same keys.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence

S_PER_NS = 1e-9
# A request's total share change at cuts with unknown u(c) up to this is float rounding, not a change.
SHARE_ROUNDING = 1e-9


def _energy_at(t_ns: Sequence[int], energy_j: Sequence[float], c: int) -> float:
    """E(c) on the curve: linear between its points, flat outside them."""
    if c <= t_ns[0]:
        return float(energy_j[0])
    if c >= t_ns[-1]:
        return float(energy_j[-1])
    i = bisect.bisect_right(t_ns, c)  # t_ns[i - 1] <= c < t_ns[i]
    if t_ns[i - 1] == c:
        return float(energy_j[i - 1])
    frac = (c - t_ns[i - 1]) / (t_ns[i] - t_ns[i - 1])
    return energy_j[i - 1] + (energy_j[i] - energy_j[i - 1]) * frac


def _segments(start: int, times: Sequence[int], tokens: Sequence[int]) -> list[tuple[int, int, float]]:
    """(from_ns, to_ns, tokens/s): each token-carrying chunk time's tokens spread since the previous one."""
    groups: dict[int, float] = {}
    for t, n in zip(times, tokens):
        if n > 0:
            groups[t] = groups.get(t, 0.0) + n
    out, prev = [], start
    for t, n in groups.items():  # insertion order is time order: chunks are sorted within a request
        out.append((prev, t, n / ((t - prev) * S_PER_NS) if t > prev else 0.0))
        prev = t
    return out


def _edge_power_w(t_ns: Sequence[int], energy_j: Sequence[float], c: int, window_ns: int) -> float:
    """The larger of the average powers over [c - window, c] and [c, c + window]."""
    if window_ns <= 0:
        return 0.0
    e_c = _energy_at(t_ns, energy_j, c)
    rise_j = max(_energy_at(t_ns, energy_j, c + window_ns) - e_c, e_c - _energy_at(t_ns, energy_j, c - window_ns))
    return rise_j / (window_ns * S_PER_NS)


def _bound_at(t_ns: Sequence[int], energy_j: Sequence[float], bound_j: Sequence[float], c: int) -> float:
    """Bound of |E(c) - true E(c)| from the points' bounds: the point's own at a point or beyond an end (E is flat
    there); between two points the true curve, non-decreasing, lies in [E_i - B_i, E_i+1 + B_i+1]. NaN: unknown."""
    if c <= t_ns[0]:
        return bound_j[0]
    if c >= t_ns[-1]:
        return bound_j[-1]
    i = bisect.bisect_right(t_ns, c)  # t_ns[i - 1] <= c < t_ns[i]
    if t_ns[i - 1] == c:
        return bound_j[i - 1]
    if math.isnan(bound_j[i - 1]) or math.isnan(bound_j[i]):
        return math.nan
    e_c = _energy_at(t_ns, energy_j, c)
    return max(e_c - (energy_j[i - 1] - bound_j[i - 1]), energy_j[i] + bound_j[i] - e_c)


def attribute(
    t_ns: Sequence[int],
    energy_j: Sequence[float],
    start_ns: Sequence[int],
    end_ns: Sequence[int],
    first_token_ns: Sequence[int],
    has_first_token: Sequence[bool],
    chunk_offsets: Sequence[int],
    chunk_t_ns: Sequence[int],
    chunk_tokens: Sequence[int],
    method: str,
    update_period_s: float,
    bound_j: Sequence[float] | None = None,
) -> dict:
    t_ns = [int(x) for x in t_ns]
    energy_j = [float(x) for x in energy_j]
    n = len(start_ns)
    tokens = method == "token-weighted"
    segs = [
        _segments(
            int(start_ns[r]),
            [int(x) for x in chunk_t_ns[chunk_offsets[r] : chunk_offsets[r + 1]]],
            [int(x) for x in chunk_tokens[chunk_offsets[r] : chunk_offsets[r + 1]]],
        )
        if tokens
        else []
        for r in range(n)
    ]
    cuts = set(t_ns) | {int(x) for x in start_ns} | {int(x) for x in end_ns}
    cuts |= {int(first_token_ns[r]) for r in range(n) if has_first_token[r]}
    cuts |= {b for s in segs for (_, b, _) in s}
    cuts = sorted(cuts)

    def weight(r: int, a: int, b: int) -> float | None:
        """Weight of request r on the interval (a, b]; None when it is not active there."""
        if not (start_ns[r] <= a and b <= end_ns[r]):
            return None
        if not tokens:
            return 1.0
        return next((w for (lo, hi, w) in segs[r] if lo <= a and b <= hi), 0.0)

    t_first, t_last = t_ns[0], t_ns[-1]
    out = {"energy_j": [0.0] * n, "prefill_energy_j": [0.0] * n, "attributed_s": [0.0] * n}
    idle_j = idle_s = 0.0
    shares: list[list[float]] = []  # shares[k][r]: request r's share of interval k
    for a, b in itertools.pairwise(cuts):
        de = _energy_at(t_ns, energy_j, b) - _energy_at(t_ns, energy_j, a)
        ds = (min(max(b, t_first), t_last) - min(max(a, t_first), t_last)) * S_PER_NS
        ws = [weight(r, a, b) for r in range(n)]
        active = [r for r in range(n) if ws[r] is not None]
        total_w = sum(ws[r] for r in active)
        share = [0.0] * n
        for r in active:  # the zero-token fallback: equal shares when no active request carries weight
            share[r] = ws[r] / total_w if total_w > 0 else 1.0 / len(active)
        shares.append(share)
        if not active:
            idle_j += de
            idle_s += ds
        for r in active:
            out["energy_j"][r] += share[r] * de
            out["attributed_s"][r] += share[r] * ds
            if not has_first_token[r] or b <= first_token_ns[r]:
                out["prefill_energy_j"][r] += share[r] * de

    # Summation by parts: request energy = sum over cuts c of E(c) * (share before c - share after c), so an
    # error of at most u(c) in E(c) moves at most u(c) * |share change| of energy into or out of the request.
    # u(c) is the given bound of E(c); where none is known, the power near c times half the update period; with
    # that period unknown too (NaN), u(c) is unknown and so is the uncertainty of every request whose share changes.
    window_ns = 0 if math.isnan(update_period_s) else math.floor(update_period_s * 1e9 + 0.5)
    bounds = [math.nan] * len(t_ns) if bound_j is None else [float(x) for x in bound_j]
    zero = [0.0] * n
    unc = [0.0] * n
    unknown = [0.0] * n  # share change at cuts whose u(c) is unknown
    for m, c in enumerate(cuts):
        u_j = _bound_at(t_ns, energy_j, bounds, c)
        if math.isnan(u_j) and not math.isnan(update_period_s):
            u_j = _edge_power_w(t_ns, energy_j, c, window_ns) * update_period_s / 2 if update_period_s > 0 else 0.0
        before = shares[m - 1] if m > 0 else zero
        after = shares[m] if m < len(shares) else zero
        for r in range(n):
            if math.isnan(u_j):
                unknown[r] += abs(before[r] - after[r])
            else:
                unc[r] += u_j * abs(before[r] - after[r])
    out["uncertainty_j"] = [math.nan if unknown[r] > SHARE_ROUNDING else unc[r] for r in range(n)]
    out.update(idle_j=idle_j, idle_s=idle_s, total_j=energy_j[-1] - energy_j[0], span_s=(t_last - t_first) * S_PER_NS)
    return out
