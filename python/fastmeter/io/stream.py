"""Streaming writers: every flush appends record batches to an Arrow IPC stream and pushes them to the OS, so a
killed process loses at most what arrived since the last flush. `close()` turns the stream into the final file
with the metadata known only at the end (statistics, exit code, idle baseline), copying it batch by batch (memory
stays bounded by one batch whatever the length of the run), then fsyncs the file and its directory after the
atomic rename.

A write that fails (disk full, file size limit, read-only directory) raises `OutputError` once; everything flushed
before it stays readable as an incomplete stream (`fastmeter show` reads it), and no temporary file is left.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from fastmeter.errors import ConfigError, FastmeterError
from fastmeter.io.schema import FORMAT_VERSION, METADATA_KEY, SUFFIXES
from fastmeter.meter import SAMPLES_SCHEMA

# Rows per record batch: a write torn by a full disk loses at most this many, and a reader holds one at a time.
MAX_BATCH_ROWS = 8192


class OutputError(FastmeterError):
    """Writing an output file failed; the message names the file and what was kept."""


def schema_with(schema: pa.Schema, metadata: dict[str, Any]) -> pa.Schema:
    meta = {"format_version": FORMAT_VERSION, **metadata}
    return schema.with_metadata({METADATA_KEY: json.dumps(meta, default=str).encode()})


def part_path(path: Path, index: int) -> Path:
    """`trace.arrow` -> `trace.0003.arrow`: the numbered parts of a rotated trace."""
    return path.with_name(f"{path.stem}.{index:04d}{path.suffix}")


def part_paths(path: Path) -> list[Path]:
    """Existing numbered parts of `path`, in order."""
    pattern = re.compile(re.escape(path.stem) + r"\.(\d{4,})" + re.escape(path.suffix) + "$")
    candidates = path.parent.glob(f"{path.stem}.*{path.suffix}")
    found = [(int(m.group(1)), p) for p in candidates if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found)]


def partial_path(path: Path) -> Path:
    """Where a Parquet output streams while recording (Parquet cannot be read back half-written)."""
    return path.with_suffix(".partial.arrow")


def check_output_path(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """The one rule for outputs of trace and bench: an existing output is refused unless `force`."""
    p = Path(path)
    if p.suffix not in SUFFIXES:
        raise ConfigError(f"output {p} must end in one of {', '.join(SUFFIXES)} (Arrow IPC or Parquet)")
    if not p.parent.is_dir():
        raise ConfigError(f"output directory {p.parent} does not exist; create it first")
    if p.is_dir():
        raise ConfigError(f"output {p} is a directory; give a file name")
    existing = [q for q in (p, partial_path(p), *part_paths(p)) if q.exists()]
    if existing and not force:
        raise ConfigError(f"output {existing[0]} already exists; choose another -o or pass --force to overwrite it")
    return p


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, path: Path) -> None:
    """fsync `tmp`, rename it over `path`, fsync the directory: after a crash readers see the old file or the new
    one, never half of one (a rename is durable only once its directory is)."""
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)


def read_stream_batches(path: Path):  # type: ignore[no-untyped-def]
    """(schema, iterator of complete batches) of a stream, stopping quietly at a torn last batch."""
    f = pa.OSFile(str(path))
    reader = ipc.open_stream(f)

    def batches():  # type: ignore[no-untyped-def]
        try:
            while True:
                try:
                    yield reader.read_next_batch()
                except StopIteration:
                    return
                except (pa.ArrowInvalid, OSError):
                    return  # the writer died mid-batch: everything flushed before is intact
        finally:
            f.close()

    return reader.schema, batches()


class ArrowStreamFile:
    """One Arrow IPC stream on disk: append batches, then finish it as an IPC file (or Parquet) with new metadata."""

    def __init__(self, path: Path, stream_path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.stream_path = stream_path
        self.schema = schema
        self.rows = 0
        try:
            self._sink = pa.OSFile(str(stream_path), "wb")
            self._writer = ipc.new_stream(self._sink, schema)
            # The writer puts the schema on disk only with the first batch: an empty one now makes the file readable
            # (metadata, no rows) from the start, even if the process dies before its first flush.
            self._writer.write_batch(pa.RecordBatch.from_pylist([], schema=schema))
            self._sink.flush()
        except OSError as e:
            stream_path.unlink(missing_ok=True)
            raise OutputError(f"cannot write {stream_path}: {_why(e)}") from None
        self._open = True

    def write(self, table: pa.Table) -> None:
        """Append rows and push them to the OS, so they survive a SIGKILL of this process."""
        if table.num_rows == 0:
            return
        try:
            # Every batch carries the full dictionaries, so each one reads on its own.
            for batch in table.to_batches(max_chunksize=MAX_BATCH_ROWS):
                self._writer.write_batch(batch)
            self._sink.flush()
        except OSError as e:
            self.abandon()
            raise OutputError(
                f"writing {self.stream_path} failed: {_why(e)}; the {self.rows} rows flushed before are kept there"
            ) from None
        self.rows += table.num_rows

    def abandon(self) -> None:
        """Stop writing after a failure; what reached the file stays as an (incomplete) stream."""
        if self._open:
            self._open = False
            for close in (self._writer.close, self._sink.close):
                try:
                    close()
                except (OSError, pa.ArrowException):
                    pass  # the stream is already broken; its complete batches stay readable

    def finish(self, metadata: dict[str, Any]) -> Path:
        """Close the stream and replace it by the complete file carrying `metadata`, batch by batch."""
        try:
            self._writer.close()
            self._sink.close()
        except OSError as e:
            self.abandon()
            raise OutputError(f"closing {self.stream_path} failed: {_why(e)}; its flushed rows are kept") from None
        self._open = False
        finish_stream(self.stream_path, self.path, schema_with(self.schema, metadata))
        if self.stream_path != self.path:
            self.stream_path.unlink(missing_ok=True)
        return self.path


def finish_stream(stream_path: Path, path: Path, schema: pa.Schema) -> None:
    """Copy a closed stream, batch by batch (memory: one batch), into the final file at `path` with `schema`
    (its final metadata): written beside it, fsynced, renamed over it atomically, the directory fsynced. On failure
    nothing but the stream remains."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        _, batches = read_stream_batches(stream_path)
        if path.suffix == ".parquet":
            with pq.ParquetWriter(str(tmp), schema) as w:
                for b in batches:
                    w.write_batch(b)
        else:
            with pa.OSFile(str(tmp), "wb") as f, ipc.new_file(f, schema) as w:
                # Without the empty first batch: an IPC file may not change a dictionary between batches.
                for b in batches:
                    if b.num_rows:
                        w.write_batch(b)
        replace_durably(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"finishing {path} failed: {_why(e)}; the recorded rows are kept in {stream_path}") from None


class TraceWriter:
    """Samples as they arrive. `.arrow` outputs stream into the file itself; `.parquet` outputs stream into
    `<name>.partial.arrow` beside it, removed once the Parquet is done. With `rotate_s`, the trace is written as
    numbered parts (`trace.0000.arrow`, ...): a part is finished at the first flush `rotate_s` after it began, and
    each part reads on its own; `read_trace` reads them all as one trace."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        metadata: dict[str, Any],
        *,
        force: bool = False,
        rotate_s: float | None = None,
        schema: pa.Schema = SAMPLES_SCHEMA,
    ) -> None:
        self.path = check_output_path(path, force=force)
        if force:
            for stale in (self.path, partial_path(self.path), *part_paths(self.path)):
                stale.unlink(missing_ok=True)
        self._metadata = dict(metadata)
        self._schema = schema
        self._rotate_ns = None if rotate_s is None else int(rotate_s * 1e9)
        self._part = 0
        self._rows_before = 0
        self._finished: list[Path] = []  # rotated parts already finished
        self._file = self._open_part()

    @property
    def rows(self) -> int:
        return self._rows_before + self._file.rows

    @property
    def stream_path(self) -> Path:
        return self._file.stream_path

    def _target(self) -> Path:
        return self.path if self._rotate_ns is None else part_path(self.path, self._part)

    def _open_part(self) -> ArrowStreamFile:
        target = self._target()
        stream = target if target.suffix == ".arrow" else partial_path(target)
        meta = {**self._metadata, **({} if self._rotate_ns is None else {"part": self._part})}
        self._part_start_ns = time.monotonic_ns()
        return ArrowStreamFile(target, stream, schema_with(self._schema, meta))

    def write(self, table: pa.Table) -> None:
        self._file.write(table)
        if self._rotate_ns is not None and time.monotonic_ns() - self._part_start_ns >= self._rotate_ns:
            self._finished.append(self._file.finish({**self._metadata, "part": self._part, "part_complete": True}))
            self._rows_before += self._file.rows
            self._part += 1
            self._file = self._open_part()

    def abandon(self) -> None:
        self._file.abandon()

    def files(self) -> list[Path]:
        """What holds the rows written so far, in order: finished parts, then the stream being written."""
        return [*self._finished, self._file.stream_path]

    def close(self, final_metadata: dict[str, Any]) -> Path:
        """Finish the (last) file with all metadata; with rotation, it also says how many parts there are."""
        meta = {**self._metadata, **final_metadata, "complete": True}
        if self._rotate_ns is not None:
            meta.update(part=self._part, parts=self._part + 1, part_complete=True)
        return self._file.finish(meta)


def _why(e: OSError) -> str:
    return e.strerror or str(e)
