"""Exact percentiles of int64 values streamed in pieces (inter-token gaps read back from chunks.arrow), in memory
bounded by the pieces, not by how many values there are.

The order statistics a percentile needs are found by narrowing: each pass over the values counts them into
`BINS` bins of the range still holding the wanted rank, until that range is one value or holds few enough to
collect and select from. `percentile_of` then interpolates between them as `numpy.percentile` (method "linear")
does, so the result is the same number it gives on all the values at once."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

BINS = 65_536
# A range with at most this many values is collected in the next pass and the rank selected from it.
COLLECT_MAX = 1 << 20


def percentiles(
    passes: Callable[[], Iterable[np.ndarray]],
    qs: Sequence[float],
    scale: float = 1.0,
    *,
    bins: int = BINS,
    collect_max: int = COLLECT_MAX,
) -> list[float]:
    """`numpy.percentile(values / scale, q)` for each q, where `passes()` yields the int64 values in pieces and can
    be called again for another pass. NaN without values."""
    n, lo, hi = 0, None, None
    for a in passes():
        if len(a):
            n += len(a)
            lo = int(a.min()) if lo is None else min(lo, int(a.min()))
            hi = int(a.max()) if hi is None else max(hi, int(a.max()))
    if n == 0 or lo is None or hi is None:
        return [math.nan] * len(qs)
    plans = [_ranks(n, q) for q in qs]
    wanted = sorted({r for prev, nxt, _ in plans for r in (prev, nxt)})
    found = _select(passes, wanted, (lo, hi, n), bins, collect_max)
    return [_lerp(found[p] / scale, found[x] / scale, g) for p, x, g in plans]


def _ranks(n: int, q: float) -> tuple[int, int, float]:
    """numpy's linear method: the two neighbouring ranks of the virtual index (n - 1) q / 100, and its fraction."""
    virtual = (n - 1) * float(np.true_divide(q, 100))
    if virtual >= n - 1:
        return n - 1, n - 1, virtual - math.floor(virtual)
    prev = max(0, math.floor(virtual))
    return prev, prev + 1, virtual - prev


def _lerp(a: float, b: float, t: float) -> float:
    """numpy's `_lerp`: from the nearer end, so the result stays between a and b."""
    a64, b64 = np.float64(a), np.float64(b)
    d = b64 - a64
    return float(b64 - d * (1 - t)) if t >= 0.5 else float(a64 + d * t)


def _select(
    passes: Callable[[], Iterable[np.ndarray]],
    ranks: list[int],
    extent: tuple[int, int, int],
    bins: int,
    collect_max: int,
) -> dict[int, int]:
    """The value of each 0-based rank; `extent`: the values' (min, max, count)."""
    # per rank: [range lo, range hi (inclusive), values below the range, values in it]
    state = {r: [extent[0], extent[1], 0, extent[2]] for r in ranks}
    found: dict[int, int] = {}
    while len(found) < len(ranks):
        pending = [r for r in ranks if r not in found]
        collect = [r for r in pending if state[r][3] <= collect_max]
        narrow = [r for r in pending if r not in collect]
        kept: dict[int, list[np.ndarray]] = {r: [] for r in collect}
        hists = {r: np.zeros(bins, dtype=np.int64) for r in narrow}
        for a in passes():
            for r in collect:
                a_lo, a_hi = state[r][0], state[r][1]
                kept[r].append(a[(a >= a_lo) & (a <= a_hi)])
            for r in narrow:
                a_lo, a_hi = state[r][0], state[r][1]
                inside = a[(a >= a_lo) & (a <= a_hi)]
                hists[r] += np.bincount((inside - a_lo) // _width(a_lo, a_hi, bins), minlength=bins)[:bins]
        for r in collect:
            values = np.concatenate(kept[r]) if kept[r] else np.zeros(0, dtype=np.int64)
            found[r] = int(np.partition(values, r - state[r][2])[r - state[r][2]])
        for r in narrow:
            r_lo, r_hi, below, _ = state[r]
            w = _width(r_lo, r_hi, bins)
            cum = np.cumsum(hists[r])
            j = int(np.searchsorted(cum, r - below, side="right"))
            new_lo = r_lo + j * w
            state[r] = [new_lo, min(r_hi, new_lo + w - 1), below + (int(cum[j - 1]) if j else 0), int(hists[r][j])]
            if state[r][0] == state[r][1]:
                found[r] = state[r][0]
    return found


def _width(lo: int, hi: int, bins: int) -> int:
    return max(1, -(-(hi - lo + 1) // bins))
