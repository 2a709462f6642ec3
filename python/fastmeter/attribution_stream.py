"""Per-request attribution over streamed input, in memory bounded by the batch size, not by the run's length.

The energy curve comes in chunks (`CurveChunk`, e.g. `trace_curve` streaming a trace from disk) or as a function
evaluated at the attribution's cut instants (`bench.energy.meter_curve`: the Meter's fused knot curve); requests come
in batches sorted by start (`RequestBatch`, e.g. `run_requests` reading a run directory). The native kernel
(`_core.AttributionStream`) sweeps the same cuts in the same order with the same arithmetic as `attribute()`, so
given requests in start order the results are identical to it, bit for bit, and energy is conserved the same way:
``sum(energy_j) + idle_j == total_j`` to float rounding. Results leave in input order as soon as every request
started before them has finished (docs/attribution.md, "Streamed").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastmeter.attribution import (
    Attribution,
    BoundedCurve,
    _bound_array,
    _check_curve,
    _check_requests,
    _chunks,
    _first_token,
    _float_array,
    _idle_power,
    _int_array,
    _non_negative,
    _sorted_unique,
)
from fastmeter.errors import ConfigError

# The methods the streaming kernel implements; others (they may exist for attribute()) are refused by name.
STREAM_METHODS = ("time-share", "token-weighted")


@dataclass(frozen=True)
class CurveChunk:
    """Points of the total cumulative curve continuing the previous chunk (t strictly increasing, E not
    decreasing); bound_j per point (NaN where unknown) or None."""

    t_ns: Any
    energy_j: Any
    bound_j: Any = None


@dataclass(frozen=True)
class RequestBatch:
    """Requests continuing the previous batch in order of start_ns, in `attribute()`'s forms; chunk_offsets index
    this batch's chunks (from 0)."""

    start_ns: Any
    end_ns: Any
    first_token_ns: Any = None
    chunk_offsets: Any = None
    chunk_t_ns: Any = None
    chunk_tokens: Any = None


# The per-request arrays of an `AttributionBatch` (and of `Attribution`), in file order.
RESULT_COLUMNS = ("energy_j", "prefill_energy_j", "decode_energy_j", "net_energy_j", "uncertainty_j", "attributed_s")


@dataclass(frozen=True)
class AttributionBatch:
    """Results of requests `first_index ..` (input order), the per-request arrays of `Attribution`."""

    first_index: int
    energy_j: np.ndarray
    prefill_energy_j: np.ndarray
    decode_energy_j: np.ndarray
    net_energy_j: np.ndarray
    uncertainty_j: np.ndarray
    attributed_s: np.ndarray

    def to_arrow(self) -> Any:
        import pyarrow as pa

        return pa.table({k: getattr(self, k) for k in RESULT_COLUMNS})


@dataclass
class StreamTotals:
    """Run-level figures of `Attribution`, known once the stream has been read to its end, and the most requests
    and curve points the kernel held at once (its memory)."""

    method: str
    update_period_s: float
    idle_power_w: float | None
    requests: int = 0
    idle_j: float = math.nan
    idle_s: float = math.nan
    total_j: float = math.nan
    span_s: float = math.nan
    requests_outside_span: int = 0
    curve_points: int = 0
    heuristic_points: int = 0
    unbounded_points: dict[str, int] = field(default_factory=dict)  # per channel, from a BoundedCurve function
    peak_requests_held: int = 0
    peak_curve_points_held: int = 0

    @property
    def uncertainty(self) -> str:
        return "heuristic" if self.heuristic_points else "bound"

    def attribution(self, columns: dict[str, np.ndarray]) -> Attribution:
        """The `Attribution` of these totals and the per-request `columns` (AttributionBatch's arrays, whole)."""
        return Attribution(
            method=self.method,
            **columns,
            idle_j=self.idle_j,
            idle_s=self.idle_s,
            total_j=self.total_j,
            span_s=self.span_s,
            update_period_s=self.update_period_s,
            idle_power_w=self.idle_power_w,
            requests_outside_span=self.requests_outside_span,
            uncertainty=self.uncertainty,
            heuristic_points=self.heuristic_points,
        )


Curve = Iterable[CurveChunk] | Callable[[np.ndarray], BoundedCurve]


class StreamedAttribution:
    """Iterate to get `AttributionBatch`es; `totals` is complete after the iteration ends.

    curve: `CurveChunk`s, or a function giving the curve and its bound at sorted instants (then it is evaluated at
        every cut, as `bench` does, and nothing is interpolated). requests: `RequestBatch`es sorted by start.
    span_ns: clip every request instant to it (and, with a function curve, cut at both ends), as `bench` does.
    update_period_s: as in `attribute()`, but required (NaN: unknown): inferring it needs the whole curve.
    """

    def __init__(
        self,
        curve: Curve,
        requests: Iterable[RequestBatch],
        *,
        method: str = "time-share",
        update_period_s: float,
        idle_power_w: float | Mapping[str, float] | None = None,
        span_ns: tuple[int, int] | None = None,
    ) -> None:
        if method not in STREAM_METHODS:
            raise ConfigError(f"method {method!r} cannot be streamed (one of {STREAM_METHODS}); use attribute()")
        if update_period_s is None:
            raise ConfigError(
                "update_period_s is required when streaming (NaN if unknown): inferring it needs the whole curve"
            )
        period = update_period_s if math.isnan(update_period_s) else _non_negative("update_period_s", update_period_s)
        self._curve, self._requests, self._span = curve, requests, span_ns
        self.totals = StreamTotals(method, period, _idle_power(idle_power_w))

    def __iter__(self) -> Iterator[AttributionBatch]:
        from fastmeter import _core

        k = _core.AttributionStream(self.totals.method, self.totals.update_period_s)
        feed = _TimesCurve(self._curve, self._span) if callable(self._curve) else _ChunkCurve(iter(self._curve))
        last_start = None
        for batch in self._requests:
            arrays = self._request_arrays(batch, last_start)
            if len(arrays[0]) == 0:
                continue
            last_start = int(arrays[0][-1])
            k.add_requests(*arrays)
            self.totals.requests += len(arrays[0])
            for _ in feed.after_requests(k, self.totals, arrays):  # the curve a chunk at a time, swept as it comes
                yield from self._drain(k)
        k.end_requests()
        for _ in feed.finish(k, self.totals):  # the curve's tail, a chunk at a time
            yield from self._drain(k)
        yield from self._drain(k)
        t = self.totals
        t.idle_j, t.idle_s, t.total_j, t.span_s = k.idle_j, k.idle_s, k.total_j, k.span_s

    def _request_arrays(self, b: RequestBatch, last_start: int | None) -> tuple[np.ndarray, ...]:
        start, end = _int_array("start_ns", b.start_ns), _int_array("end_ns", b.end_ns)
        ft, has_ft = _first_token(b.first_token_ns, len(start))
        _check_requests(start, end, ft, has_ft)
        off, ct, ck = _chunks(b.chunk_offsets, b.chunk_t_ns, b.chunk_tokens, start, end, self.totals.method)
        if self._span is not None:
            lo, hi = self._span
            start, end, ft, ct = (np.clip(x, lo, hi) for x in (start, end, ft, ct))
        if np.any(np.diff(start) < 0) or (len(start) and last_start is not None and start[0] < last_start):
            raise ConfigError(
                "streamed requests must come in order of start_ns: sort them (attribute() in memory takes any order)"
            )
        return start, end, ft, has_ft.astype(np.uint8), off, ct, ck

    def _drain(self, k: Any) -> Iterator[AttributionBatch]:
        t = self.totals
        t.peak_requests_held = max(t.peak_requests_held, k.requests_held)
        t.peak_curve_points_held = max(t.peak_curve_points_held, k.curve_points_held)
        raw = k.advance()
        energy = raw["energy_j"]
        if not len(energy):
            return
        t.requests_outside_span += int(np.count_nonzero(raw["outside_span"]))
        prefill, share_s = raw["prefill_energy_j"], raw["attributed_s"]
        idle_w = t.idle_power_w
        yield AttributionBatch(
            first_index=int(raw["first_index"]),
            energy_j=energy,
            prefill_energy_j=prefill,
            decode_energy_j=energy - prefill,
            net_energy_j=energy - idle_w * share_s if idle_w is not None else np.full(len(energy), np.nan),
            uncertainty_j=raw["uncertainty_j"],
            attributed_s=share_s,
        )


def attribute_streamed(curve: Curve, requests: Iterable[RequestBatch], **kwargs: Any) -> Attribution:
    """`StreamedAttribution` collected into one `Attribution` (the per-request arrays in memory: for tests and runs
    that fit; write the batches out instead to keep memory bounded)."""
    s = StreamedAttribution(curve, requests, **kwargs)
    parts = list(s)
    t = s.totals

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts]) if parts else np.zeros(0)

    return t.attribution({k: cat(k) for k in RESULT_COLUMNS})


class _ChunkCurve:
    """Curve chunks pulled as the sweep needs them: just past the latest instant the next cuts may read."""

    def __init__(self, chunks: Iterator[CurveChunk]) -> None:
        self._chunks = chunks
        self._last: tuple[int, float] | None = None
        self._ended = False

    def after_requests(self, k: Any, totals: StreamTotals, _arrays: tuple[np.ndarray, ...]) -> Iterator[None]:
        while not self._ended and (self._last is None or self._last[0] <= k.curve_needed_until_ns):
            self._pull(k, totals)
            yield None

    def finish(self, k: Any, totals: StreamTotals) -> Iterator[None]:
        while not self._ended:
            self._pull(k, totals)
            yield None

    def _pull(self, k: Any, totals: StreamTotals) -> None:
        chunk = next(self._chunks, None)
        if chunk is None:
            self._ended = True
            _end_curve(k, totals)
            return
        t, e = _int_array("t_ns", chunk.t_ns), _float_array("energy_j", chunk.energy_j)
        if not len(t):
            return
        _check_curve(t, e)
        if self._last is not None and (t[0] <= self._last[0] or e[0] < self._last[1]):
            raise ConfigError(
                "curve chunks must continue each other: times strictly increasing, energy not decreasing across chunks"
            )
        b = None if chunk.bound_j is None else _bound_array(chunk.bound_j, len(t))
        k.add_curve(t, e, b)
        self._last = (int(t[-1]), float(e[-1]))
        totals.curve_points += len(t)
        totals.heuristic_points += len(t) if b is None else int(np.count_nonzero(np.isnan(b)))


class _TimesCurve:
    """A curve function evaluated at every cut instant once no later request can add an earlier one: instants
    before the latest start read are final."""

    def __init__(self, fn: Callable[[np.ndarray], BoundedCurve], span_ns: tuple[int, int] | None) -> None:
        self._fn = fn
        self._pending = _sorted_unique(np.array(span_ns or (), dtype=np.int64))
        self._last_e = -math.inf

    def after_requests(self, k: Any, totals: StreamTotals, arrays: tuple[np.ndarray, ...]) -> Iterator[None]:
        start, end, ft, has_ft, _off, ct, _ck = arrays
        times = _sorted_unique(np.concatenate([self._pending, start, end, ft[has_ft != 0], ct]))
        cut = int(np.searchsorted(times, start[-1]))  # instants before the watermark are final
        self._pending = times[cut:]
        self._add(k, totals, times[:cut])
        yield None

    def finish(self, k: Any, totals: StreamTotals) -> Iterator[None]:
        self._add(k, totals, self._pending)
        self._pending = self._pending[:0]
        _end_curve(k, totals)
        yield None

    def _add(self, k: Any, totals: StreamTotals, t: np.ndarray) -> None:
        if not len(t):
            return
        points = self._fn(t)
        e = _float_array("energy_j", points.energy_j)
        _check_curve(t, e)
        if e[0] < self._last_e:
            raise ConfigError("the curve function's energy decreases between cut instants")
        self._last_e = float(e[-1])
        k.add_curve(t, e, points.bound_j)
        totals.curve_points += len(t)
        totals.heuristic_points += int(np.count_nonzero(np.isnan(points.bound_j)))
        for name, n in points.unbounded_points.items():
            totals.unbounded_points[name] = totals.unbounded_points.get(name, 0) + n


def _end_curve(k: Any, totals: StreamTotals) -> None:
    if totals.curve_points == 0:
        raise ConfigError("the energy curve is empty: pass at least one (t_ns, energy_j) point")
    k.end_curve()
