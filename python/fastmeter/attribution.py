"""Per-request energy attribution: split a measured energy curve among the requests that overlapped it.

``attribute()`` validates its input, runs the native sweep (or its pure-Python twin) and returns an
``Attribution`` with per-request gross, prefill, decode, net energy and an uncertainty: a rigorous bound of each
request's attribution error when the curve's own error bound is given, else a heuristic. The rules (elementary
intervals, time-share, token weights, the zero-token fallback, the uncertainty) are in docs/attribution.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fastmeter.errors import ConfigError

if TYPE_CHECKING:
    from fastmeter.meter import Meter

METHODS = ("time-share", "token-weighted")
BACKENDS = ("native", "reference")


@dataclass(frozen=True)
class Attribution:
    """Per-request arrays (one entry per request, input order) and run-level totals.

    ``sum(energy_j) + idle_j == total_j`` to float rounding. ``net_energy_j`` is NaN unless an idle power was
    given. Only energy inside the curve's span ``[t_ns[0], t_ns[-1]]`` is known and attributed;
    ``requests_outside_span`` counts requests that reach beyond it. ``uncertainty`` says what ``uncertainty_j``
    is: "bound" when every curve point's error bound was known (then ``|energy_j - energy_j on the true curve| <=
    uncertainty_j`` for every request), "heuristic" when the update-period estimate served somewhere;
    ``heuristic_points`` counts the curve points without a known bound (all of them when no bound was given).
    """

    method: str
    energy_j: np.ndarray
    prefill_energy_j: np.ndarray
    decode_energy_j: np.ndarray
    net_energy_j: np.ndarray
    uncertainty_j: np.ndarray
    attributed_s: np.ndarray
    idle_j: float
    idle_s: float
    total_j: float
    span_s: float
    update_period_s: float
    idle_power_w: float | None
    requests_outside_span: int
    uncertainty: str
    heuristic_points: int

    def to_arrow(self) -> Any:
        """The per-request arrays as a pyarrow.Table."""
        import pyarrow as pa

        names = (
            "energy_j",
            "prefill_energy_j",
            "decode_energy_j",
            "net_energy_j",
            "uncertainty_j",
            "attributed_s",
        )
        return pa.table({k: getattr(self, k) for k in names})


def attribute(
    t_ns: Any,
    energy_j: Any,
    start_ns: Any,
    end_ns: Any,
    first_token_ns: Any = None,
    *,
    chunk_offsets: Any = None,
    chunk_t_ns: Any = None,
    chunk_tokens: Any = None,
    method: str = "time-share",
    update_period_s: float | None = None,
    idle_power_w: float | Mapping[str, float] | None = None,
    bound_j: Any = None,
    backend: str = "native",
) -> Attribution:
    """Attribute the energy of the total cumulative curve ``E(t_ns) = energy_j`` to requests.

    t_ns, energy_j: the curve, strictly increasing CLOCK_MONOTONIC ns and non-decreasing cumulative J (sum of
        channels: ``total_curve(meter, event_times(...))``). E is linear between the points given, so evaluate
        the curve at ``event_times(...)`` and pass those points: then nothing is interpolated here.
    start_ns, end_ns: per request. first_token_ns: per request, None/NaN/null where it failed before its first
        token (all its energy is then prefill); None for all missing.
    chunk_offsets, chunk_t_ns, chunk_tokens: token chunks, request r owns ``[offsets[r], offsets[r+1])``;
        required by ``method="token-weighted"``.
    update_period_s: counter refresh period behind the heuristic ``uncertainty_j``; None infers it
        (``infer_update_period_s``), which is only right when the curve is raw counter samples; NaN: unknown, so a
        request whose share changes at a cut without a known bound gets ``uncertainty_j`` NaN.
    bound_j: per curve point, a bound of the error of ``energy_j`` there (J, >= 0; NaN where unknown), e.g. the
        sum over channels of ``Meter.cumulative_at(t, with_bound=True)`` bounds (``bounded_total_curve``). Where
        known, it replaces the heuristic and ``uncertainty_j`` bounds each request's error rigorously.
    idle_power_w: baseline power (W, or {channel: W} summed) subtracted for net energy.
    backend: "native" or "reference" (the pure-Python twin, quadratic, for tests).
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    t = _int_array("t_ns", t_ns)
    e = _float_array("energy_j", energy_j)
    _check_curve(t, e)
    bound = None if bound_j is None else _bound_array(bound_j, len(t))
    start, end = _int_array("start_ns", start_ns), _int_array("end_ns", end_ns)
    ft, has_ft = _first_token(first_token_ns, len(start))
    _check_requests(start, end, ft, has_ft)
    offsets, ct, ck = _chunks(chunk_offsets, chunk_t_ns, chunk_tokens, start, end, method)
    if update_period_s is None:
        period_s = infer_update_period_s(t, e)
    elif isinstance(update_period_s, float) and math.isnan(update_period_s):
        period_s = math.nan
    else:
        period_s = _non_negative("update_period_s", update_period_s)
    idle_w = _idle_power(idle_power_w)

    args = (t, e, start, end, ft, has_ft.astype(np.uint8), offsets, ct, ck, method, period_s, bound)
    if backend == "native":
        from fastmeter import _core

        raw = _core.attribute(*args)
    else:
        from fastmeter.reference.attribute import attribute as twin

        raw = twin(*(a.tolist() if isinstance(a, np.ndarray) else a for a in args))
    energy = np.asarray(raw["energy_j"], dtype=np.float64)
    prefill = np.asarray(raw["prefill_energy_j"], dtype=np.float64)
    share_s = np.asarray(raw["attributed_s"], dtype=np.float64)
    net = energy - idle_w * share_s if idle_w is not None else np.full(len(energy), np.nan)
    outside = int(np.count_nonzero((start < t[0]) | (end > t[-1])))
    heuristic_points = len(t) if bound is None else int(np.count_nonzero(np.isnan(bound)))
    return Attribution(
        method=method,
        energy_j=energy,
        prefill_energy_j=prefill,
        decode_energy_j=energy - prefill,
        net_energy_j=net,
        uncertainty_j=np.asarray(raw["uncertainty_j"], dtype=np.float64),
        attributed_s=share_s,
        idle_j=float(raw["idle_j"]),
        idle_s=float(raw["idle_s"]),
        total_j=float(raw["total_j"]),
        span_s=float(raw["span_s"]),
        update_period_s=period_s,
        idle_power_w=idle_w,
        requests_outside_span=outside,
        uncertainty="heuristic" if heuristic_points else "bound",
        heuristic_points=heuristic_points,
    )


def event_times(start_ns: Any, end_ns: Any, first_token_ns: Any = None, chunk_t_ns: Any = None) -> np.ndarray:
    """Sorted unique times at which attribution cuts the timeline; E there is all the curve it needs."""
    parts = [_int_array("start_ns", start_ns), _int_array("end_ns", end_ns)]
    ft, has_ft = _first_token(first_token_ns, len(parts[0]))
    parts.append(ft[has_ft])
    if chunk_t_ns is not None:
        parts.append(_int_array("chunk_t_ns", chunk_t_ns))
    return _sorted_unique(np.concatenate(parts))


def infer_update_period_s(t_ns: Any, energy_j: Any) -> float:
    """Median time between consecutive curve points whose energy differs (0 with fewer than two changes)."""
    t = np.asarray(t_ns, dtype=np.int64)
    e = np.asarray(energy_j, dtype=np.float64)
    changes = t[1:][np.diff(e) != 0]
    if len(changes) < 2:
        return 0.0
    return float(np.median(np.diff(changes))) * 1e-9


@dataclass(frozen=True)
class BoundedCurve:
    """The total cumulative curve at some instants with the bound of its error there (NaN where unknown), and per
    counted channel the number of instants at which that channel's bound is unknown (only channels with some)."""

    energy_j: np.ndarray
    bound_j: np.ndarray
    unbounded_points: dict[str, int]


def total_curve(meter: Meter, t_ns: Any, *, delays_ns: Mapping[str, int] | None = None) -> np.ndarray:
    """Cumulative joules at each instant of `t_ns` (int64 CLOCK_MONOTONIC ns), summed over the meter's counted
    channels (each physical quantity once), on the Meter's own fused curve (`Meter.cumulative_at`): the one curve
    behind windows, run totals and attribution. A channel whose counter lags reality by d (calibrated, `delays_ns`)
    is read at t + d: what it reported then happened at t."""
    return bounded_total_curve(meter, t_ns, delays_ns=delays_ns).energy_j


def bounded_total_curve(meter: Meter, t_ns: Any, *, delays_ns: Mapping[str, int] | None = None) -> BoundedCurve:
    """`total_curve` and its error bound from the same query: the sum of the counted channels' bounds (errors add
    across channels), NaN at an instant where any counted channel's bound is unknown (no energy counter, outside
    its record)."""
    t = _int_array("t_ns", t_ns)
    delays_ns = delays_ns or {}
    total, bound = np.zeros(len(t)), np.zeros(len(t))
    unbounded = {}
    for c in meter.channels:
        if not c.in_total:
            continue
        e, b = meter.cumulative_at(t + delays_ns.get(c.name, 0), with_bound=True)[c.name]
        # Unknown stays unknown: an instant where a counted channel has no value has no total (never a partial sum).
        total += e
        bound += b
        if n_unknown := int(np.count_nonzero(np.isnan(b))):
            unbounded[c.name] = n_unknown
    # Each channel's curve is monotone; rounding in the sum must not make the total step backwards (the bounds
    # carry a relative float margin far above that rounding). NaN instants are left out of that and stay NaN.
    known = ~np.isnan(total)
    total[known] = np.maximum.accumulate(total[known]) if known.any() else total[known]
    return BoundedCurve(total, bound, unbounded)


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique, minus its cost on large int64 arrays under numpy 2.x (seconds per million): sort + mask."""
    y = np.sort(x)
    return y[np.concatenate([[True], y[1:] != y[:-1]])] if len(y) else y


def _int_array(name: str, x: Any) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ConfigError(f"{name} must be one-dimensional, got shape {a.shape}")
    if a.size and a.dtype.kind not in "iu":
        raise ConfigError(f"{name} must hold integers (ns or counts), got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.int64)


def _bound_array(x: Any, n: int) -> np.ndarray:
    b = _float_array("bound_j", x)
    if len(b) != n:
        raise ConfigError(f"bound_j must have one entry per curve point ({n}), got {len(b)}")
    if np.any(np.isinf(b) | (b < 0)):
        raise ConfigError("bound_j must be finite and >= 0 (NaN where the bound is unknown)")
    return b


def _float_array(name: str, x: Any) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ConfigError(f"{name} must be one-dimensional, got shape {a.shape}")
    return a


def _non_negative(name: str, x: float) -> float:
    v = float(x)
    if not (math.isfinite(v) and v >= 0):
        raise ConfigError(f"{name} must be a finite number >= 0, got {x!r}")
    return v


def _idle_power(idle_power_w: float | Mapping[str, float] | None) -> float | None:
    if idle_power_w is None:
        return None
    if isinstance(idle_power_w, Mapping):
        return sum(_non_negative(f"idle_power_w[{k!r}]", v) for k, v in idle_power_w.items())
    return _non_negative("idle_power_w", idle_power_w)


def _first_token(x: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, present mask) from ints, floats with NaN, sequences with None, masked or pyarrow arrays."""
    if x is None:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    if hasattr(x, "is_valid") and hasattr(x, "fill_null"):  # pyarrow Array / ChunkedArray
        has = np.asarray(x.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        values = x.fill_null(0).to_numpy(zero_copy_only=False)
    elif np.ma.isMaskedArray(x):
        has, values = ~np.ma.getmaskarray(x), np.ma.getdata(x)
    else:
        raw = np.asarray(x)
        if raw.dtype == object:
            has = np.array([v is not None and not (isinstance(v, float) and math.isnan(v)) for v in raw], dtype=bool)
            values = np.array([int(v) if ok else 0 for v, ok in zip(raw, has)], dtype=np.int64)
        elif raw.dtype.kind == "f":
            has = ~np.isnan(raw)
            values = np.where(has, raw, 0.0)
        else:
            has, values = np.ones(raw.shape, dtype=bool), raw
    values = np.asarray(values)
    if values.ndim != 1 or len(values) != n:
        raise ConfigError(f"first_token_ns must have one entry per request ({n}), got shape {values.shape}")
    return np.ascontiguousarray(values, dtype=np.int64), np.ascontiguousarray(has, dtype=bool)


def _check_curve(t: np.ndarray, e: np.ndarray) -> None:
    if len(t) != len(e):
        raise ConfigError(f"t_ns and energy_j must have the same length, got {len(t)} and {len(e)}")
    if len(t) == 0:
        raise ConfigError("the energy curve is empty: pass at least one (t_ns, energy_j) point")
    if not np.all(np.isfinite(e)):
        raise ConfigError("energy_j has NaN or infinite values; drop or fill them before attributing")
    if np.any(np.diff(t) <= 0):
        raise ConfigError("t_ns must be strictly increasing: sort the curve and drop duplicate times")
    if np.any(np.diff(e) < 0):
        raise ConfigError("energy_j is cumulative and must not decrease: correct counter wraps/resets first")


def _check_requests(start: np.ndarray, end: np.ndarray, ft: np.ndarray, has_ft: np.ndarray) -> None:
    if len(start) != len(end):
        raise ConfigError(f"start_ns and end_ns must have the same length, got {len(start)} and {len(end)}")
    bad = np.flatnonzero(end < start)
    if bad.size:
        raise ConfigError(f"request {bad[0]} ends before it starts (end_ns < start_ns); {bad.size} such requests")
    bad = np.flatnonzero(has_ft & ((ft < start) | (ft > end)))
    if bad.size:
        raise ConfigError(f"request {bad[0]}: first_token_ns lies outside [start_ns, end_ns]")


def _chunks(offsets: Any, t: Any, tokens: Any, start: np.ndarray, end: np.ndarray, method: str) -> tuple:
    given = [x is not None for x in (offsets, t, tokens)]
    if not any(given):
        if method == "token-weighted":
            raise ConfigError("method='token-weighted' needs chunk_offsets, chunk_t_ns and chunk_tokens")
        return (
            np.zeros(len(start) + 1, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
        )
    if not all(given):
        raise ConfigError("pass chunk_offsets, chunk_t_ns and chunk_tokens together")
    off, ct, ck = (
        _int_array("chunk_offsets", offsets),
        _int_array("chunk_t_ns", t),
        _int_array("chunk_tokens", tokens),
    )
    if len(off) != len(start) + 1 or off[0] != 0 or off[-1] != len(ct) or np.any(np.diff(off) < 0):
        raise ConfigError(
            "chunk_offsets must have one more entry than requests, start at 0, not decrease and end at len(chunk_t_ns)"
        )
    if len(ck) != len(ct):
        raise ConfigError(f"chunk_t_ns and chunk_tokens must have the same length, got {len(ct)} and {len(ck)}")
    if np.any(ck < 0):
        raise ConfigError("chunk_tokens must be >= 0")
    owner = np.repeat(np.arange(len(start)), np.diff(off))
    bad = np.flatnonzero((ct < start[owner]) | (ct > end[owner]))
    if bad.size:
        raise ConfigError(f"chunk {bad[0]} (request {owner[bad[0]]}) lies outside its request's [start_ns, end_ns]")
    if np.any((np.diff(ct) < 0) & (owner[1:] == owner[:-1])):
        raise ConfigError("chunk_t_ns must be sorted within each request")
    return off, ct, ck
