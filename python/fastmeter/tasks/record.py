"""Per-batch energy on a running Meter: the recorder the task runner and the training integrations share.

    rec = BatchRecorder(meter, warmup_batches=2)
    for x in loader:
        with rec.batch(items=len(x)) as b:
            y = model(x)
            b.values["correct"] = float((y.argmax(1) == labels).sum())
    table = rec.table()                  # each batch's energy and bound, on the Meter's one curve
    rec.write(run_dir / "batches.arrow")

A batch only holds its two CLOCK_MONOTONIC instants while it runs; its energy is read afterwards from the Meter's
fused knot curve (`Meter.span`, or `attribution.bounded_total_curve` with calibrated delays), so per-batch figures,
the run's total and per-item shares all come from one curve. Batches may nest or overlap (a step inside an epoch);
warm-up batches are kept and marked.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from fastmeter.attribution import bounded_total_curve
from fastmeter.errors import ConfigError, SpanError
from fastmeter.meter import Meter

# Columns every batches.arrow has, in order; numeric `values` of the batches follow as float64 columns.
BATCHES_SCHEMA = pa.schema(
    [
        pa.field("batch", pa.int64(), nullable=False),
        pa.field("warmup", pa.bool_(), nullable=False),
        pa.field("t0_ns", pa.int64(), nullable=False),
        pa.field("t1_ns", pa.int64(), nullable=False),
        pa.field("items", pa.int64(), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("energy_j", pa.float64()),
        pa.field("energy_bound_j", pa.float64()),
        pa.field("energy_per_item_j", pa.float64()),
    ]
)
# What streams to disk while batches run (energy is known only once the counters have updated past each batch).
BATCH_TIMES_SCHEMA = pa.schema([BATCHES_SCHEMA.field(n) for n in ("batch", "warmup", "t0_ns", "t1_ns", "items")])


@dataclass(frozen=True)
class Batch:
    """One timed batch: [t0_ns, t1_ns] on CLOCK_MONOTONIC, how many items it processed, and named numbers the
    caller attached (loss, correct predictions, step, epoch...)."""

    index: int
    t0_ns: int
    t1_ns: int
    items: int
    warmup: bool
    values: Mapping[str, float] = field(default_factory=dict)

    @property
    def latency_ms(self) -> float:
        return (self.t1_ns - self.t0_ns) / 1e6


@dataclass
class OpenBatch:
    """What `BatchRecorder.batch()` yields: set `items` (if only known at the end) and `values` inside the block."""

    items: int
    values: dict[str, float] = field(default_factory=dict)
    t0_ns: int = 0


@dataclass(frozen=True)
class BatchEnergy:
    """Energy of each batch (aligned with `BatchRecorder.batches`) with its error bound: |energy_j - truth| <=
    energy_bound_j. NaN where the curve is unknown in the window."""

    energy_j: np.ndarray
    energy_bound_j: np.ndarray


class BatchRecorder:
    """Times batches on a running `Meter` and reads each one's energy from the Meter's curve.

    warmup_batches: the first N batches are marked `warmup` (kept in batches.arrow, left out of `measured()`).
    on_batch(batch): called as each batch ends, on the thread that ran it (stream its row to disk, show progress).
    delays_ns: a calibrated counter lag per channel (`bench.energy.channel_delays_ns`): each channel's curve is
        read that much later than the batch's instants.
    Thread-safe: batches may be recorded from several threads (e.g. data-parallel workers of one process).
    """

    def __init__(
        self,
        meter: Meter,
        *,
        warmup_batches: int = 0,
        on_batch: Callable[[Batch], None] | None = None,
        delays_ns: Mapping[str, int] | None = None,
    ) -> None:
        if not isinstance(warmup_batches, int) or warmup_batches < 0:
            raise ConfigError(f"warmup_batches={warmup_batches!r} must be an integer >= 0")
        self.meter = meter
        self.warmup_batches = warmup_batches
        self.on_batch = on_batch
        self.delays_ns = dict(delays_ns or {})
        self._batches: list[Batch] = []
        self._lock = threading.Lock()

    @contextmanager
    def batch(self, items: int = 0, **values: float) -> Iterator[OpenBatch]:
        """Time the block as one batch. A block that raises records nothing (the exception propagates)."""
        b = OpenBatch(items, dict(values), time.monotonic_ns())
        yield b
        self.add(b.t0_ns, time.monotonic_ns(), b.items, **b.values)

    def add(self, t0_ns: int, t1_ns: int, items: int, **values: float) -> Batch:
        """Record a batch timed by the caller (int CLOCK_MONOTONIC ns, e.g. from `time.monotonic_ns()`)."""
        if not (isinstance(t0_ns, int) and isinstance(t1_ns, int)) or t1_ns < t0_ns:
            raise ConfigError(f"a batch needs integer ns instants with t0_ns <= t1_ns, got {t0_ns!r}, {t1_ns!r}")
        if not isinstance(items, int) or items < 0:
            raise ConfigError(f"a batch's items must be an integer >= 0, got {items!r}")
        clean = {}
        for k, v in values.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or k in BATCHES_SCHEMA.names:
                raise ConfigError(
                    f"batch value {k}={v!r}: values are numbers under names other than the "
                    f"columns {', '.join(BATCHES_SCHEMA.names)}"
                )
            clean[k] = float(v)
        with self._lock:
            index = len(self._batches)
            batch = Batch(index, t0_ns, t1_ns, items, index < self.warmup_batches, clean)
            self._batches.append(batch)
        if self.on_batch is not None:
            self.on_batch(batch)
        return batch

    @property
    def batches(self) -> list[Batch]:
        with self._lock:
            return list(self._batches)

    def measured(self) -> list[Batch]:
        """The batches after warm-up."""
        return [b for b in self.batches if not b.warmup]

    def span_ns(self) -> tuple[int, int] | None:
        """[first measured batch's start, last measured batch's end], or None before any measured batch."""
        m = self.measured()
        return (min(b.t0_ns for b in m), max(b.t1_ns for b in m)) if m else None

    def energies(self, batches: list[Batch] | None = None) -> BatchEnergy:
        """Energy of `batches` (default: all) on the Meter's curve, with `Meter.span`'s bound of each window: it
        bounds the difference directly, tighter than the two edges' bounds summed (about 1.5x on the emulator).
        With calibrated counter delays the curve is read shifted per channel, in one query at every edge, and the
        bound is the edges' bounds summed. While the meter runs, a result waits (bounded) for the counters to
        update past the batch's end."""
        batches = self.batches if batches is None else batches
        if not batches:
            return BatchEnergy(np.zeros(0), np.zeros(0))
        if not self.delays_ns:
            spans = [_span_or_unknown(self.meter, b) for b in batches]
            return BatchEnergy(np.array([e for e, _ in spans]), np.array([b for _, b in spans]))
        t0 = np.array([b.t0_ns for b in batches], dtype=np.int64)
        t1 = np.array([b.t1_ns for b in batches], dtype=np.int64)
        edges = np.unique(np.concatenate([t0, t1]))  # sorted: the curve is made monotone along its instants
        # A lagging channel is read later than the last edge: let that instant come first (the curve is never
        # extrapolated into the future, so reading it now would say "unknown").
        later_ns = int(edges[-1]) + max(self.delays_ns.values())
        if self.meter.running:
            time.sleep(max(0, later_ns - time.monotonic_ns()) * 1e-9)
        curve = bounded_total_curve(self.meter, edges, delays_ns=self.delays_ns)
        i0, i1 = np.searchsorted(edges, t0), np.searchsorted(edges, t1)
        return BatchEnergy(curve.energy_j[i1] - curve.energy_j[i0], curve.bound_j[i1] + curve.bound_j[i0])

    def table(self, energy: BatchEnergy | None = None) -> pa.Table:
        """batches.arrow's rows (BATCHES_SCHEMA, then one float64 column per value name; null where a batch did
        not set it). energy_per_item_j is the batch's energy shared equally among its items (null for 0 items).
        `energy`: `energies()` of all batches, when the caller has it already."""
        batches = self.batches
        e = self.energies(batches) if energy is None else energy
        items = np.array([b.items for b in batches], dtype=np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            per_item = np.where(items > 0, e.energy_j / np.maximum(items, 1), np.nan)
        cols = {
            "batch": pa.array([b.index for b in batches], pa.int64()),
            "warmup": pa.array([b.warmup for b in batches], pa.bool_()),
            "t0_ns": pa.array([b.t0_ns for b in batches], pa.int64()),
            "t1_ns": pa.array([b.t1_ns for b in batches], pa.int64()),
            "items": pa.array(items, pa.int64()),
            "latency_ms": pa.array([b.latency_ms for b in batches], pa.float64()),
            "energy_j": _floats(e.energy_j),
            "energy_bound_j": _floats(e.energy_bound_j),
            "energy_per_item_j": _floats(per_item),
        }
        names = dict.fromkeys(k for b in batches for k in b.values)
        for name in names:
            cols[name] = _floats(np.array([b.values.get(name, math.nan) for b in batches], dtype=np.float64))
        return pa.table(cols)

    def write(self, path: str | Path) -> Path:
        """batches.arrow as an Arrow IPC file (written beside and renamed over `path`, fsynced)."""
        from fastmeter.bench.tables import write_arrow

        path = Path(path)
        write_arrow(self.table(), path)
        return path


def times_table(batches: list[Batch]) -> pa.Table:
    """The rows that stream while a run goes (BATCH_TIMES_SCHEMA): timing only, energy comes at the end."""
    return pa.table(
        {
            "batch": pa.array([b.index for b in batches], pa.int64()),
            "warmup": pa.array([b.warmup for b in batches], pa.bool_()),
            "t0_ns": pa.array([b.t0_ns for b in batches], pa.int64()),
            "t1_ns": pa.array([b.t1_ns for b in batches], pa.int64()),
            "items": pa.array([b.items for b in batches], pa.int64()),
        },
        schema=BATCH_TIMES_SCHEMA,
    )


def _span_or_unknown(meter: Meter, b: Batch) -> tuple[float, float]:
    """(energy_j, bound_j) of one batch's window; NaN for a window outside the meter's record."""
    try:
        s = meter.span(b.t0_ns, b.t1_ns)
    except SpanError:
        return math.nan, math.nan
    return s.total_j, s.total_bound_j


def _floats(x: np.ndarray) -> pa.Array:
    """float64 with NaN as null: unknown stays unknown in Arrow too."""
    return pa.array(x, pa.float64(), mask=np.isnan(x))
