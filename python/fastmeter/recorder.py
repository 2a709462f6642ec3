"""The recording loop that `fastmeter trace`, `fastmeter bench` and other harnesses share: it owns the meter, the
streaming trace writer, the flush cadence, extra record streams (requests, chunks), the idle baseline and the
signal hooks. It never prints; it reports progress and failure through callbacks the caller renders.

    rec = Recorder(meter, "trace.arrow", metadata)
    rec.start()
    ...                                  # a background thread drains the meter to disk as it goes
    rec.close({"exit_code": 0})          # stop, drain the rest, finish the file (fsynced)
"""

from __future__ import annotations

import math
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from fastmeter import _core
from fastmeter.errors import SpanError
from fastmeter.io.read import read_batches
from fastmeter.io.stream import ArrowStreamFile, OutputError, TraceWriter, check_output_path, schema_with
from fastmeter.meter import SAMPLES_SCHEMA, Meter
from fastmeter.telemetry import TELEMETRY_SCHEMA

# At most this much is lost to a SIGKILL.
FLUSH_MAX_INTERVAL_S = 0.5
# Drain before this many samples accumulate: the flush cadence follows the sample rate, so a meter that keeps only a
# bounded window of samples in RAM is drained long before that window is recycled, and each batch stays small.
FLUSH_MAX_SAMPLES = 65_536
# Below this a flush costs more than it saves (each batch carries its own dictionary).
FLUSH_MIN_INTERVAL_S = 0.02
# How often the flush thread hands the allocator's free memory back to the kernel (`_core.release_free_heap`): each
# flush allocates and frees columns of varying size, and glibc keeps what was freed inside its arenas, where it counts
# in RSS (a 16-channel 10 kHz trace grew ~4 MB a minute that way). A trim costs well under a millisecond.
HEAP_TRIM_INTERVAL_S = 5.0


def flush_interval_s(n_channels: int, period_us: int) -> float:
    """Seconds between drains for `n_channels` polled every `period_us`."""
    samples_per_s = max(n_channels, 1) * 1e6 / period_us
    return min(FLUSH_MAX_INTERVAL_S, max(FLUSH_MIN_INTERVAL_S, FLUSH_MAX_SAMPLES / samples_per_s))


def exit_code_for_signal(signum: int) -> int:
    """The shell convention: 128 + N (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + signum


@dataclass
class Interrupt:
    """SIGINT/SIGTERM as they arrive: the first one's number and CLOCK_MONOTONIC instant, and how many came.
    `on_signal(signum, count)` runs in the handler (main thread or event loop), e.g. to forward or escalate."""

    on_signal: Callable[[int, int], None] | None = None
    signum: int | None = None
    t_ns: int | None = None
    count: int = 0
    signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
    _previous: dict[int, Any] = field(default_factory=dict)

    def handle(self, signum: int, _frame: object = None) -> None:
        if self.signum is None:
            self.signum, self.t_ns = signum, time.monotonic_ns()
        self.count += 1
        if self.on_signal is not None:
            self.on_signal(signum, self.count)

    @contextmanager
    def caught(self) -> Iterator[Interrupt]:
        """Catch the signals with `signal.signal` (main thread) for the duration of the block."""
        for s in self.signals:
            self._previous[s] = signal.signal(s, self.handle)
        try:
            yield self
        finally:
            for s, h in self._previous.items():
                signal.signal(s, h)

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else exit_code_for_signal(self.signum)


class RecordStream:
    """Rows (requests, chunks...) appended from any thread and written by the recorder's flush thread, so they
    reach disk at the same cadence as the samples."""

    def __init__(self, path: Path, schema: pa.Schema, metadata: dict[str, Any]) -> None:
        self.path = path
        self._file = ArrowStreamFile(path, path, schema_with(schema, metadata))
        self._pending: list[pa.Table] = []
        self._lock = threading.Lock()
        self._followed: tuple[Sequence[Any], Callable[[Sequence[Any]], pa.Table]] | None = None
        self._followed_n = 0

    def append(self, table: pa.Table) -> None:
        with self._lock:
            self._pending.append(table)

    def follow(self, rows: Sequence[Any], to_table: Callable[[Sequence[Any]], pa.Table]) -> None:
        """Also write, at each flush, the rows appended to `rows` since the last one (a list another thread grows,
        such as the Prometheus scraper's)."""
        self._followed, self._followed_n = (rows, to_table), 0

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            if self._followed is not None:
                rows, to_table = self._followed
                n = len(rows)  # the list only grows; a slice taken under the GIL is consistent
                if n > self._followed_n:
                    pending.append(to_table(rows[self._followed_n : n]))
                    self._followed_n = n
        if pending:
            self._file.write(pa.concat_tables(pending))

    def abandon(self) -> None:
        self._file.abandon()

    def finish(self, metadata: dict[str, Any]) -> Path:
        return self._file.finish(metadata)

    @property
    def rows(self) -> int:
        """Rows on disk so far: appended rows count once a flush has written them (bench drops a finished request
        from RAM only then)."""
        return self._file.rows


class Recorder:
    """Owns the meter's drain to disk. `start()` opens the output (an unwritable one fails here, before anything
    runs) and starts meter and flush thread; `close()` stops both and finishes the file.

    on_flush(rows_written): after each flush, from the flush thread (render progress with it).
    on_error(error): once, from the flush thread, when a write fails; recording to disk then stops, the meter
        keeps running until `close()`, and `close()` raises the error after stopping everything.
    """

    def __init__(
        self,
        meter: Meter,
        path: str | Path,
        metadata: dict[str, Any],
        *,
        force: bool = False,
        rotate_s: float | None = None,
        on_flush: Callable[[int], None] | None = None,
        on_error: Callable[[OutputError], None] | None = None,
        schema: pa.Schema = SAMPLES_SCHEMA,
        telemetry_path: str | Path | None = None,
    ) -> None:
        if rotate_s is not None and not (math.isfinite(rotate_s) and rotate_s > 0):
            raise OutputError(f"rotation interval {rotate_s!r} s must be a finite number > 0")
        self.meter = meter
        self.path = check_output_path(path, force=force)
        # A (monotonic, realtime) pair read together: wall time of any t_ns, known from the first flushed batch on.
        anchor = {"monotonic_ns": time.monotonic_ns(), "realtime_ns": time.time_ns()}
        self.metadata = {"realtime_anchor": anchor, **metadata}
        self.interval_s = flush_interval_s(len(meter.channels), meter.period_us)
        self.error: OutputError | None = None
        self._schema = schema  # the meter's samples table (a ClusterMeter's has a `node` column)
        self._force = force
        self._rotate_s = rotate_s
        self._on_flush = on_flush
        self.on_error = on_error  # settable later (bench points it at its event loop)
        self._writer: TraceWriter | None = None
        self._streams: list[RecordStream] = []
        # The meter's telemetry (docs/format.md, "Telemetry files"), streamed at the samples' cadence; none when the
        # meter reads no telemetry.
        self.telemetry_path = None
        # A ClusterMeter (fastmeter.cluster) reads no telemetry: it has no telemetry_series.
        if telemetry_path is not None and getattr(meter, "telemetry_series", None):
            self.telemetry_path = check_output_path(telemetry_path, force=force)
        self._telemetry: RecordStream | None = None
        self._telemetry_written = 0
        self._written = 0
        self._flushes = 0
        self._flush_max_ns = 0
        self._trimmed_ns = time.monotonic_ns()
        self._trims = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fastmeter-flush", daemon=True)

    # --- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> Recorder:
        self._writer = TraceWriter(
            self.path, self.metadata, force=self._force, rotate_s=self._rotate_s, schema=self._schema
        )
        if self.telemetry_path is not None:
            self._telemetry = RecordStream(self.telemetry_path, TELEMETRY_SCHEMA, self._telemetry_metadata())
            self._streams.append(self._telemetry)
        try:
            self.meter.start()
        except BaseException:
            self._writer.abandon()
            self._writer.stream_path.unlink(missing_ok=True)
            raise
        self._thread.start()
        return self

    def add_stream(self, path: Path, schema: pa.Schema, metadata: dict[str, Any] | None = None) -> RecordStream:
        """A second stream written at the same cadence (bench's requests and chunks)."""
        s = RecordStream(path, schema, metadata or {})
        self._streams.append(s)
        return s

    @property
    def rows(self) -> int:
        return self._writer.rows if self._writer is not None else 0

    def flush(self) -> None:
        """Drain the meter and the record streams to disk now (the flush thread calls this on its cadence)."""
        with self._lock:
            if self.error is not None or self._writer is None:
                return
            t0 = time.monotonic_ns()
            try:
                n = self.meter.sample_count()
                self._writer.write(self.meter.samples(self._written, n))
                self._written = n
                if self._telemetry is not None:
                    k = self.meter.telemetry_count()
                    self._telemetry.append(self.meter.telemetry_range(self._telemetry_written, k))
                    self._telemetry_written = k
                for s in self._streams:
                    s.flush()
            except OutputError as e:
                self._fail(e)
                return
            except SpanError as e:  # a meter with a bounded RAM window recycled samples before they were drained
                self._fail(
                    OutputError(
                        f"samples from #{self._written} left the meter's memory before they were written to "
                        f"{self.path} ({e}); keep more in RAM or sample less often. Rows written before are kept"
                    )
                )
                return
            self._flushes += 1
            self._flush_max_ns = max(self._flush_max_ns, time.monotonic_ns() - t0)
            if t0 - self._trimmed_ns >= HEAP_TRIM_INTERVAL_S * 1e9:
                self._trimmed_ns = t0
                self._trims += _core.release_free_heap()
        if self._on_flush is not None:
            self._on_flush(self.rows)

    def samples(self, start: int = 0, stop: int | None = None) -> pa.Table:
        """Samples [start, stop) by sequence number: from the meter while it holds them in RAM, else read back from
        what this recorder already wrote (a meter that keeps a bounded window raises SpanError for older ones)."""
        try:
            return self.meter.samples(start, stop)
        except SpanError:
            stop = self.meter.sample_count() if stop is None else stop
            with self._lock:
                written = self._written
                disk = self._read_back(start, min(stop, written))
            return pa.concat_tables([disk, self.meter.samples(written, stop)]) if stop > written else disk

    def _read_back(self, start: int, stop: int) -> pa.Table:
        assert self._writer is not None, "samples() before start()"
        if self.error is not None:
            raise SpanError(f"samples {start}..{stop} left RAM and writing them failed: {self.error}")
        pieces, pos = [], 0
        for batch in (b for path in self._writer.files() for b in read_batches(path)):
            if pos >= stop:
                break
            lo, hi = max(start - pos, 0), min(stop - pos, batch.num_rows)
            if lo < hi:
                pieces.append(batch.slice(lo, hi - lo))
            pos += batch.num_rows
        return pa.Table.from_batches(pieces, schema=self._schema)

    def _fail(self, e: OutputError) -> None:
        self.error = e
        for s in self._streams:
            s.abandon()
        if self._writer is not None:
            self._writer.abandon()
        if self.on_error is not None:
            self.on_error(e)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def stop(self) -> None:
        """Stop the flush thread and the meter, then drain what is left. Safe to call twice."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.meter.stop()
        self.flush()

    def close(self, final_metadata: dict[str, Any]) -> Path:
        """Stop and finish the trace with `final_metadata` (and the sampler statistics). Raises the write error,
        if one happened, after everything is stopped: the rows flushed before it stay readable."""
        self.stop()
        if self.error is not None:
            raise self.error
        assert self._writer is not None, "close() before start()"
        stats = self.meter.stats()
        if self._telemetry is not None:
            self._telemetry.finish({**self._telemetry_metadata(), "complete": True, "sampler_stats": stats})
        return self._writer.close({"sampler_stats": stats, "recorder": self.telemetry(), **final_metadata})

    def _telemetry_metadata(self) -> dict[str, Any]:
        return {
            "format_version": 1,
            "realtime_anchor": self.metadata["realtime_anchor"],
            "telemetry": {
                "hz": self.meter.telemetry_hz,
                "series": [list(x) for x in self.meter.telemetry_series],
                "unavailable": self.meter.telemetry_unavailable,
            },
        }

    def telemetry(self) -> dict[str, float | int]:
        """How the recording itself went: flush cadence and count, the longest flush, how many heap trims gave
        memory back, and this process's peak RSS (a run of any length should keep it flat)."""
        return {
            "flush_interval_s": self.interval_s,
            "flushes": self._flushes,
            "heap_trims": self._trims,
            "flush_max_ms": self._flush_max_ns / 1e6,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }

    # --- idle baseline ---------------------------------------------------------------------------------------
    def measure_idle(self, seconds: float, stopped: Callable[[], bool] = lambda: False) -> dict[str, float]:
        """Average power per channel over `seconds` of idle (cut short when `stopped()`): the baseline above
        which net energy is counted. A channel with no known energy in the window is left out, never 0."""
        with self.meter.window("idle") as w:
            end = time.monotonic() + seconds
            while time.monotonic() < end and not stopped():
                time.sleep(min(0.05, max(end - time.monotonic(), 0.0)))
        if w.duration_s <= 0:
            return {}
        return {n: e / w.duration_s for n, e in w.by_channel.items() if not math.isnan(e)}
