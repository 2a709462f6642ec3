"""The requests of a bench run as they finish: streamed to requests.arrow and chunks.arrow at the recorder's cadence,
and dropped from RAM once both their rows are on disk. What stays is the requests in flight (`live`), those finished
since the last flush, and, only when a scorer needs them, the (prompt, text) of successful measured ones.

The end of the run (`close`) hands over a `Staged` run: how many rows of each stream are on disk (a prefix, also
after a failed write) and the records still in RAM that follow them. bench/readback.py reads it back from there.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastmeter.adapters.base import RequestRecord
from fastmeter.bench.tables import STATUS_CANCELLED, chunks_table, requests_table
from fastmeter.load.live import LiveRecords
from fastmeter.recorder import RecordStream


@dataclass(frozen=True)
class Staged:
    """requests.arrow's first `rows` rows and chunks.arrow's first `chunk_rows` rows are on disk (as streams), in
    the order the requests finished; `tail` follows them, in RAM (unwritten, or closed at an interrupt)."""

    requests_path: Path
    chunks_path: Path
    rows: int
    chunk_rows: int
    tail: list[RequestRecord]


class RequestLog:
    """`finished(rec)` is the load's `on_done`: it queues the request's rows on the streams and forgets the record
    once the flush thread has written them. After `stop()` (a signal, a failed write) finished requests stay in
    `live`: `close()` closes them at the stop instant (cancelled) and puts them at the end."""

    def __init__(
        self,
        requests: RecordStream,
        chunks: RecordStream,
        *,
        keep_texts: bool = False,
        on_request: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        self.live = LiveRecords()
        self._requests, self._chunks = requests, chunks
        self._keep_texts, self._on_request = keep_texts, on_request
        # (rows, chunk rows) the streams must have written for the record to be on disk, and the record.
        self._unwritten: deque[tuple[int, int, RequestRecord]] = deque()
        self._rows = self._chunk_rows = 0
        self.texts: list[RequestRecord] = []  # stripped copies for the scorer: prompt, text, status, end
        self.stopped = False
        self.peak_unwritten = 0

    def finished(self, rec: RequestRecord) -> None:
        if not self.stopped:
            self.live.discard(rec)
            self._requests.append(requests_table([rec]))
            self._chunks.append(chunks_table([rec]))
            self._rows += 1
            self._chunk_rows += len(rec.chunk_t_ns)
            self._unwritten.append((self._rows, self._chunk_rows, rec))
            self.peak_unwritten = max(self.peak_unwritten, len(self._unwritten))
            if self._keep_texts and rec.ok and not rec.warmup:
                self.texts.append(RequestRecord(rec.request_id, prompt=rec.prompt, text=rec.text, end_ns=rec.end_ns))
        self._forget_written()
        if self._on_request is not None:
            self._on_request(rec)

    def _forget_written(self) -> None:
        rows, chunk_rows = self._requests.rows, self._chunks.rows
        while self._unwritten and self._unwritten[0][0] <= rows and self._unwritten[0][1] <= chunk_rows:
            self._unwritten.popleft()

    def close(self, stopped_ns: int | None) -> Staged:
        """After the recorder stopped (its last flush done): the staged prefix and the tail. With `stopped_ns`,
        requests still live are closed there first (`close_in_flight`)."""
        self._forget_written()
        for s in (self._requests, self._chunks):
            s.abandon()  # the streams end here; the final files are written from them (bench/readback.py)
        live = list(self.live)
        if stopped_ns is not None:
            close_in_flight(live, stopped_ns)
        if self._unwritten:
            rows, chunk_rows, first = self._unwritten[0]
            rows, chunk_rows = rows - 1, chunk_rows - len(first.chunk_t_ns)
        else:
            rows, chunk_rows = self._rows, self._chunk_rows
        tail = [r for _, _, r in self._unwritten] + live
        return Staged(self._requests.path, self._chunks.path, rows, chunk_rows, tail)


def close_in_flight(records: list[RequestRecord], t_ns: int) -> None:
    """Requests unfinished at the interrupt instant end there, as `cancelled`; their energy up to it is theirs. One
    that completed after the instant, before the load stopped, keeps its record (attribution clips it to the span);
    one that failed after the instant failed because the load was stopped, so it is cancelled too."""
    for r in records:
        if r.end_ns is not None and (r.end_ns <= t_ns or r.ok):
            continue
        r.status, r.error = STATUS_CANCELLED, "the run was interrupted while this request was in flight"
        if r.send_ns is None or r.send_ns > t_ns:
            r.send_ns = r.first_token_ns = r.end_ns = None  # never reached the server
            continue
        r.end_ns = t_ns
        if r.first_token_ns is not None and r.first_token_ns > t_ns:
            r.first_token_ns = None
        kept = [i for i, c in enumerate(r.chunk_t_ns) if c <= t_ns]
        r.chunk_t_ns = [r.chunk_t_ns[i] for i in kept]
        r.chunk_tokens = [r.chunk_tokens[i] for i in kept]
