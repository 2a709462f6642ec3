"""Pure-Python twin of csrc/fastmeter/shape.cpp, written from the rule in docs/attribution.md ("Activity").

Inside each knot interval (k_i, k_{i+1}) the measured delta E_{i+1} - E_i is spread in proportion to the integral
of the predicted power p(t) (linearly in time where that integral is 0); at the knots the curve is the measured
one; outside them it is flat. The integral is summed segment by segment over the overlap of each constant piece of
p with the wanted span (no prefix sums), so it shares no arithmetic with the kernel. Quadratic: small inputs only.
"""

from __future__ import annotations

from collections.abc import Sequence

S_PER_NS = 1e-9


def _power_integral(power_t_ns: Sequence[int], power_w: Sequence[float], a: int, b: int) -> float:
    """Integral of p over [a, b] in W*s: p = power_w[j] on [t_j, t_{j+1}), the last value after, 0 before t_0."""
    total = 0.0
    for j, w in enumerate(power_w):
        lo = max(a, power_t_ns[j])
        hi = b if j + 1 == len(power_w) else min(b, power_t_ns[j + 1])
        if hi > lo:
            total += w * (hi - lo) * S_PER_NS
    return total


def shape_curve(
    knot_t_ns: Sequence[int],
    knot_energy_j: Sequence[float],
    power_t_ns: Sequence[int],
    power_w: Sequence[float],
    query_t_ns: Sequence[int],
) -> list[float]:
    """The shaped cumulative energy at each query instant (same arguments as `_core.shape_curve`)."""
    out = []
    for t in query_t_ns:
        if t <= knot_t_ns[0]:
            out.append(float(knot_energy_j[0]))
            continue
        if t >= knot_t_ns[-1]:
            out.append(float(knot_energy_j[-1]))
            continue
        i = max(j for j, k in enumerate(knot_t_ns) if k <= t)
        lo, hi = knot_t_ns[i], knot_t_ns[i + 1]
        e0, e1 = knot_energy_j[i], knot_energy_j[i + 1]
        whole = _power_integral(power_t_ns, power_w, lo, hi)
        if whole > 0:
            frac = _power_integral(power_t_ns, power_w, lo, t) / whole
        else:
            frac = (t - lo) / (hi - lo)
        out.append(min(e1, max(e0, e0 + (e1 - e0) * frac)))
    return out
