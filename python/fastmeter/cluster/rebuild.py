"""A lost node's curve, rebuilt on the driver from the samples that arrived before the loss.

The node's meter is gone with the node, but every span that ends before the loss was measured: its channels'
curves are rebuilt from the arrived samples by the same native kernels the meter runs (`build_knots`/`energy_at`
for the value, `energy_range`/`span_range` for the bound), so a window inside the arrived record keeps its answer.
What samples do not carry is inferred: a counter channel's every sample is taken as a counter reading (the meter
also knows polls where the read failed; those repeat the last value, so they only place a change point half a poll
later), and a change is a sample whose cumulative energy differs from the previous one.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from fastmeter import _core
from fastmeter.analysis.trace_summary import channel_columns

# The trailing window of NVML power readings (csrc/fastmeter/integrate.h kNvmlPowerWindowNs), used by the meter's
# fusion for GPU channels; other sources' power readings are instantaneous.
POWER_WINDOW_NS = {"gpu": 25_000_000}


def rebuilt_span(
    samples: pa.Table,
    channel: str,
    domain: str,
    has_counter: bool,
    unit_j: float,
    t0_ns: int,
    t1_ns: int,
    clock_bound_ns: int,
) -> tuple[float, float]:
    """(energy_j, bound_j) of `channel` over [t0_ns, t1_ns] from its samples (driver clock); the bound includes the
    curve's energy across each edge's clock uncertainty. NaN bound for a channel without a counter."""
    t, e, p = channel_columns(samples, channel)
    if len(t) < 2 or t0_ns < t[0] or t1_ns > t[-1]:
        return math.nan, math.nan
    counter = np.full(len(t), has_counter)
    changed = np.concatenate([[False], np.diff(e) != 0])
    kt, ke, kp, _ = _core.build_knots(t, e, p, counter, changed, POWER_WINDOW_NS.get(domain, 0))
    b = clock_bound_ns
    q = np.clip(np.array([t0_ns, t1_ns, t0_ns - b, t0_ns + b, t1_ns - b, t1_ns + b], dtype=np.int64), t[0], t[-1])
    at = _core.energy_at(kt, ke, kp, q)
    energy_j = float(at[1] - at[0])
    clock_j = float((at[3] - at[2]) + (at[5] - at[4]))
    if not has_counter:
        return energy_j, math.nan
    lo, hi, pmax_w = _core.energy_range(t, e, p, counter, changed, unit_j, q[:2])
    slo, shi = _core.span_range(lo[:1], hi[:1], lo[1:], hi[1:], pmax_w, q[:1], q[1:2])
    bound_j = max(energy_j - float(slo[0]), float(shi[0]) - energy_j)
    return energy_j, bound_j + clock_j
