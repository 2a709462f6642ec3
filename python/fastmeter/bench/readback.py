"""The end of a bench run, read back from what it streamed: a few int64 per request in RAM (`RequestColumns`), the
chunks from chunks.arrow a record batch at a time (`ChunkFile`), and the final requests.arrow and chunks.arrow
written batch by batch from the staged streams (bench/request_log.py) and the records that followed them.

Rows keep the order the requests finished in (warm-up ones first), the tail last; a request's chunks are
contiguous in chunks.arrow and in the same order, so `n_chunks` locates them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fastmeter.bench.request_log import Staged
from fastmeter.bench.tables import CHUNKS_SCHEMA, REQUESTS_SCHEMA, chunks_table, requests_table
from fastmeter.io.stream import OutputError, read_stream_batches, replace_durably

NO_NS = np.iinfo(np.int64).min  # an instant that is not known (never sent, never ended, no first token)
# Rows per record batch of the final files.
WRITE_ROWS = 65_536
# Stream batches read before they are joined into one (a request's row is a batch of its own in the stream).
_JOIN_BATCHES = 256


@dataclass
class RequestColumns:
    """Per request, in requests.arrow's row order. Instants are int64 CLOCK_MONOTONIC ns (NO_NS: unknown); token
    counts 0 where the server gave none (as the summary counts them). 7 int64 and 3 bools: 59 bytes a request."""

    scheduled_ns: np.ndarray
    send_ns: np.ndarray
    first_token_ns: np.ndarray
    end_ns: np.ndarray
    n_chunks: np.ndarray
    prompt_tokens: np.ndarray
    completion_tokens: np.ndarray
    warmup: np.ndarray
    ok: np.ndarray  # status "ok" (a request without an end is "cancelled", as requests.arrow says)
    bunched: np.ndarray

    def __len__(self) -> int:
        return len(self.send_ns)

    def chunk_starts(self) -> np.ndarray:
        """Each request's first row in chunks.arrow."""
        return np.cumsum(self.n_chunks) - self.n_chunks


_INSTANTS = ("scheduled_ns", "send_ns", "first_token_ns", "end_ns")
_COUNTS = ("n_chunks", "prompt_tokens", "completion_tokens")


def _columns_of(batch: pa.RecordBatch | pa.Table) -> dict[str, np.ndarray]:
    """Copies, not views: a view would keep the batch's Arrow buffers (and the allocator's pages around them)
    alive for the rest of the run."""

    def column(name: str, fill: object, dtype: type) -> np.ndarray:
        return np.array(pc.fill_null(batch.column(name), fill).to_numpy(zero_copy_only=False), dtype=dtype)

    out = {k: column(k, NO_NS, np.int64) for k in _INSTANTS}
    out.update({k: column(k, 0, np.int64) for k in _COUNTS})
    out.update({k: column(k, False, bool) for k in ("warmup", "bunched")})
    ok = pc.fill_null(pc.equal(batch.column("status"), "ok"), False)
    out["ok"] = np.array(ok.to_numpy(zero_copy_only=False), dtype=bool) & (out["end_ns"] != NO_NS)
    return out


def _prefix(path: Path, rows: int) -> Iterator[pa.RecordBatch]:
    """The first `rows` rows of a staged stream (a torn batch past them is never read), in batches of up to
    WRITE_ROWS rows: the stream holds one small batch per request (each is appended as it finishes), and per-batch
    work and objects would cost more than the rows themselves."""
    if rows == 0:
        return
    _, batches = read_stream_batches(path)
    left, held, n = rows, [], 0
    for b in batches:
        part = b.slice(0, left)
        left -= part.num_rows
        held.append(part)
        n += part.num_rows
        if len(held) >= _JOIN_BATCHES or n >= WRITE_ROWS or left == 0:
            held = [_joined(held)]  # each batch read holds its own buffers: join them as they come
        if n >= WRITE_ROWS or left == 0:
            yield held.pop()
            n = 0
        if left == 0:
            return
    raise OutputError(f"{path} holds fewer rows than were written to it ({rows - left} of {rows}); it was changed")


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def read_columns(staged: Staged) -> RequestColumns:
    """The columns of every request: the staged prefix read back batch by batch, then the tail."""
    parts = [_columns_of(b) for b in _prefix(staged.requests_path, staged.rows)]
    parts.append(_columns_of(requests_table(staged.tail)))
    return RequestColumns(**{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def write_chunks(staged: Staged, path: Path) -> ChunkFile:
    """The final chunks.arrow (the staged prefix, then the tail's chunks), written beside `path`, fsynced and renamed
    over it; returns it opened for reading back."""
    lengths: list[int] = []

    batches = _chain(_prefix(staged.chunks_path, staged.chunk_rows), chunks_table(staged.tail).to_batches())
    _write(path, CHUNKS_SCHEMA, batches, lengths)
    return ChunkFile(path, np.array(lengths, dtype=np.int64))


def write_requests(staged: Staged, path: Path, per_request: dict[str, np.ndarray]) -> None:
    """The final requests.arrow: the staged prefix and the tail, with the per-request columns (float64, NaN
    written as null) attached row for row."""
    schema = requests_table([], {k: np.zeros(0) for k in per_request}).schema
    row = 0

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal row
        for b in _chain(_prefix(staged.requests_path, staged.rows), requests_table(staged.tail).to_batches()):
            cols = [b.column(k) for k in REQUESTS_SCHEMA.names]
            for values in per_request.values():
                v = values[row : row + b.num_rows]
                cols.append(pa.array(v, pa.float64(), mask=np.isnan(v)))
            row += b.num_rows
            yield pa.record_batch(cols, schema=schema)

    _write(path, schema, batches(), [])


def _chain(*parts: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for p in parts:
        yield from p


def _write(path: Path, schema: pa.Schema, batches: Iterator[pa.RecordBatch], lengths: list[int]) -> None:
    """An Arrow IPC file from `batches` in record batches of WRITE_ROWS rows (the streams' small flushes joined, so
    reading it back costs a few large reads), beside `path`, fsynced, renamed over it; `lengths` gets each written
    batch's row count."""
    tmp = path.with_name(path.name + ".tmp")
    held: list[pa.RecordBatch] = []

    def write(w: pa.ipc.RecordBatchFileWriter, keep_short: bool) -> None:
        joined = pa.Table.from_batches(held, schema).combine_chunks()
        held.clear()
        for part in joined.to_batches(max_chunksize=WRITE_ROWS):
            if keep_short and part.num_rows < WRITE_ROWS:
                held.append(part)  # the last short piece waits for more rows
            else:
                w.write_batch(part)
                lengths.append(part.num_rows)

    try:
        with pa.OSFile(str(tmp), "wb") as f, pa.ipc.new_file(f, schema) as w:
            n = 0
            for b in batches:
                held.append(b)
                n += b.num_rows
                if n >= WRITE_ROWS:
                    write(w, keep_short=True)
                    n = sum(h.num_rows for h in held)  # the short piece kept
            write(w, keep_short=False)
        replace_durably(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"writing {path} failed: {e.strerror or e}; the other files of the run are kept") from None


class ChunkFile:
    """chunks.arrow read back: any requests' chunks by row range (`gather`), or every chunk in order (`batches`),
    one record batch at a time. Read, not memory-mapped: mapped pages would stay resident after use."""

    def __init__(self, path: Path, lengths: np.ndarray) -> None:
        self.path = path
        self._starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _batch(self, reader: pa.ipc.RecordBatchFileReader, i: int) -> tuple[np.ndarray, np.ndarray]:
        b = reader.get_batch(i)
        return b.column("t_ns").to_numpy().astype(np.int64), b.column("tokens").to_numpy().astype(np.int64)

    def gather(self, first_rows: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(t_ns, tokens) of the chunk rows [first_rows[i], first_rows[i] + counts[i]), concatenated in that order.
        The record batches read are kept until the next call (consecutive calls in start order share most)."""
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        rows = np.repeat(first_rows, counts) + within
        which = np.searchsorted(self._starts, rows, side="right") - 1
        needed = np.unique(which)
        with pa.OSFile(str(self.path)) as f:
            reader = pa.ipc.open_file(f)
            cache = {int(i): self._cache.get(int(i)) or self._batch(reader, int(i)) for i in needed}
        self._cache = cache
        sizes = self._starts[needed + 1] - self._starts[needed]
        base = np.cumsum(sizes) - sizes
        pos = base[np.searchsorted(needed, which)] + rows - self._starts[which]
        t = np.concatenate([cache[int(i)][0] for i in needed])
        k = np.concatenate([cache[int(i)][1] for i in needed])
        return t[pos], k[pos]

    def batches(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(first row, t_ns, tokens) of each record batch, in order."""
        with pa.OSFile(str(self.path)) as f:
            reader = pa.ipc.open_file(f)
            for i in range(reader.num_record_batches):
                t, k = self._batch(reader, i)
                yield int(self._starts[i]), t, k
