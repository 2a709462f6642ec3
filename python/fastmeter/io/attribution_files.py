"""Streamed attribution from and to disk: a run directory's requests and chunks and a trace's samples read a record
batch at a time and converted a slice at a time, per-request results written a batch at a time. Feeds
`fastmeter.attribution_stream.StreamedAttribution`."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastmeter.attribution_stream import RESULT_COLUMNS, AttributionBatch, CurveChunk, RequestBatch
from fastmeter.errors import ConfigError
from fastmeter.io.read import open_trace
from fastmeter.io.stream import OutputError, replace_durably

# Rows converted to numpy at a time.
SLICE_ROWS = 65_536


def _slices(path: Path, rows: int) -> Iterator[pa.RecordBatch]:
    """The record batches of an Arrow IPC file, cut to at most `rows` rows each (zero-copy). Read, not
    memory-mapped: mapped pages would stay resident (and counted) after the sweep has passed them."""
    try:
        f = pa.OSFile(str(path))
        reader = pa.ipc.open_file(f)
    except (OSError, pa.ArrowInvalid) as e:
        raise ConfigError(
            f"cannot read {path} as an Arrow file ({e}); pass a run directory written by `bench`"
        ) from None
    with f:
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            for lo in range(0, batch.num_rows, rows):
                yield batch.slice(lo, rows)


class _Rows:
    """The next n rows of a sliced file, across its slice boundaries."""

    def __init__(self, slices: Iterator[pa.RecordBatch]) -> None:
        self._slices, self._held = slices, None

    def take(self, n: int) -> pa.Table:
        parts, need = [], n
        while need > 0:
            if self._held is None or self._held.num_rows == 0:
                self._held = next(self._slices, None)
                if self._held is None:
                    raise ConfigError("chunks.arrow has fewer rows than requests.arrow's n_chunks add up to")
            part = self._held.slice(0, need)
            self._held = self._held.slice(part.num_rows)
            parts.append(part)
            need -= part.num_rows
        return pa.Table.from_batches(parts) if parts else pa.table({"t_ns": [], "tokens": []})


class RowNumbers:
    """Which row of requests.arrow each streamed request came from, held only until its result is written (results
    leave in input order)."""

    def __init__(self) -> None:
        self._parts: deque[np.ndarray] = deque()

    def add(self, rows: np.ndarray) -> None:
        if len(rows):
            self._parts.append(rows)

    def take(self, n: int) -> np.ndarray:
        out = []
        while n > 0:
            part = self._parts[0]
            out.append(part[:n])
            if len(part) <= n:
                self._parts.popleft()
            else:
                self._parts[0] = part[n:]
            n -= len(out[-1])
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def run_request_batches(
    run_dir: str | os.PathLike[str], rows: int = SLICE_ROWS, row_numbers: RowNumbers | None = None
) -> Iterator[RequestBatch]:
    """The attributable requests of a run directory (sent and ended, not warm-up), a slice at a time;
    `row_numbers` collects their rows in requests.arrow. requests.arrow must be in order of send_ns among them
    (StreamedAttribution says so otherwise). chunks.arrow is read alongside, its rows following requests.arrow's
    through `n_chunks`."""
    d = Path(run_dir)
    chunks = _Rows(_slices(d / "chunks.arrow", rows))
    row0 = 0
    for s in _slices(d / "requests.arrow", rows):
        n_chunks = s.column("n_chunks").fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        c = chunks.take(int(n_chunks.sum()))
        ok = pc.and_(
            pc.and_(s.column("send_ns").is_valid(), s.column("end_ns").is_valid()),
            pc.invert(s.column("warmup").fill_null(False)),
        )
        mask = np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)
        keep = np.flatnonzero(mask)
        chunk_rows = np.flatnonzero(np.repeat(mask, n_chunks))
        sub_offsets = np.concatenate([[0], np.cumsum(n_chunks[keep])]).astype(np.int64)
        ft = s.column("first_token_ns").take(pa.array(keep, pa.int64()))
        if row_numbers is not None:
            row_numbers.add(row0 + keep)
        yield RequestBatch(
            s.column("send_ns").to_numpy(zero_copy_only=False)[keep].astype(np.int64),
            s.column("end_ns").to_numpy(zero_copy_only=False)[keep].astype(np.int64),
            ft,
            sub_offsets,
            c.column("t_ns").to_numpy()[chunk_rows].astype(np.int64),
            c.column("tokens").to_numpy()[chunk_rows].astype(np.int64),
        )
        row0 += s.num_rows


def trace_curve(path: str | os.PathLike[str], channel: str | None = None) -> Iterator[CurveChunk]:
    """One channel's cumulative energy from a trace (all parts of a rotated one), a record batch at a time. `channel`
    may be omitted when the trace has one. Summing several channels needs them on common instants: evaluate
    `attribution.total_curve` on a Meter, or pass each channel's own attribution."""
    tb = open_trace(path)
    if channel is None:
        if len(tb.channels) != 1:
            raise ConfigError(f"{path} has channels {tb.channels}: name the one to attribute (channel=...)")
        channel = tb.channels[0]
    elif channel not in tb.channels:
        raise ConfigError(f"{path} has no channel {channel!r}; its channels are {tb.channels}")
    for batch in tb.batches():
        if len(tb.channels) > 1:
            batch = batch.filter(pc.equal(pc.cast(batch.column("channel"), pa.string()), channel))
        yield CurveChunk(batch.column("t_ns").to_numpy(), batch.column("energy_j").to_numpy())


def write_attribution(
    batches: Iterable[AttributionBatch], path: str | os.PathLike[str], row_numbers: RowNumbers | None = None
) -> int:
    """Write each batch as it comes to an Arrow IPC file (beside `path`, renamed over it at the end, fsynced): a
    `request` column (the input index, or with `row_numbers` the request's row in the run's requests.arrow) and the
    per-request result columns. Returns the number of requests written."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    schema = pa.schema([("request", pa.int64())] + [(k, pa.float64()) for k in RESULT_COLUMNS])
    n = 0
    try:
        with pa.OSFile(str(tmp), "wb") as f, pa.ipc.new_file(f, schema) as w:
            for b in batches:
                k = len(b.energy_j)
                index = np.arange(b.first_index, b.first_index + k) if row_numbers is None else row_numbers.take(k)
                cols = [pa.array(index, pa.int64())] + [pa.array(getattr(b, c)) for c in RESULT_COLUMNS]
                w.write_batch(pa.record_batch(cols, schema=schema))
                n += k
        replace_durably(tmp, p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"writing {p} failed: {e.strerror or e}") from None
    return n
