"""Read any trace fastmeter writes: a complete Arrow IPC file, Parquet, or a stream cut short by a crash."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from fastmeter.errors import FastmeterError
from fastmeter.io.schema import METADATA_KEY
from fastmeter.io.shape import (
    BOOL,
    FLOAT,
    INT,
    INT64,
    NUMBER,
    NUMBER_MAP,
    OBJECT,
    STRINGS,
    TEXT_LIST,
    TEXT_MAP,
    Shape,
    check_columns,
    check_object,
)
from fastmeter.io.stream import part_path, part_paths, partial_path, read_stream_batches

_ARROW_FILE_MAGIC = b"ARROW1"

TRACE_COLUMNS = {"t_ns": INT64, "channel": STRINGS, "energy_j": FLOAT, "power_w": FLOAT}
SAMPLER_STATS = {
    "rate_hz": NUMBER,
    "jitter_p50_us": NUMBER,
    "jitter_p99_us": NUMBER,
    "jitter_max_us": NUMBER,
    "missed": INT,
    "dropped": INT,
    "polls": INT,
    "errors": TEXT_MAP,
    "update_period_s": NUMBER_MAP,
}
# The metadata keys readers use (docs/format.md), with the shape each must have.
TRACE_METADATA = {
    "format_version": INT,
    "sampler": {"period_us": INT, "sources": TEXT_LIST},
    "command": TEXT_LIST,
    "exit_code": INT,
    "complete": BOOL,
    "sampler_stats": SAMPLER_STATS,
    "idle_baseline_w": NUMBER_MAP,
    "idle_baseline_s": NUMBER,
    "stopped_by_signal": INT,
    "interrupted": BOOL,
    "fingerprint": OBJECT,
    "calibration": OBJECT,
    "part": INT,
    "parts": INT,
    "part_complete": BOOL,
    "signals_sent": Shape(
        lambda v: v is None or (isinstance(v, list) and all(isinstance(x, int) for x in v)),
        "a list of integers or null",
    ),
}
_FIX = "it was not written by fastmeter, or was damaged; record it again with `fastmeter trace`"
_PARQUET_MAGIC = b"PAR1"


@dataclass
class Trace:
    table: pa.Table
    metadata: dict[str, Any]
    complete: bool  # False for a stream that was never finished (the recorder was killed)

    @property
    def channels(self) -> list[str]:
        col = self.table.column("channel")
        if pa.types.is_dictionary(col.type):
            return [str(c) for c in col.combine_chunks().dictionary.to_pylist()]
        return [str(c) for c in pc.unique(col).to_pylist()]

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The loaded rows as record batches: the same interface as `TraceBatches`, for code that takes either."""
        return iter(self.table.to_batches())


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """One trace, loaded whole: a file, the stream of an unfinished Parquet output (`<name>.partial.arrow`), or the
    numbered parts of a rotated trace (`trace.0000.arrow`, ... read as one when given `trace.arrow` or any part).
    For traces too long for memory, `open_trace` reads batch by batch."""
    tb = open_trace(path)
    schema = _schema_of(tb.paths[-1])
    batches = list(tb.batches())
    table = pa.Table.from_batches(batches) if batches else schema.empty_table()
    return Trace(table.replace_schema_metadata(schema.metadata), tb.metadata, tb.complete)


def _base_of_part(p: Path) -> Path | None:
    """`trace.0003.arrow` -> `trace.arrow`; None when `p` is not a numbered part."""
    stem, dot, index = p.stem.rpartition(".")
    return p.with_name(stem + p.suffix) if dot and len(index) >= 4 and index.isdigit() else None


@dataclass
class TraceBatches:
    """A trace opened without loading it: its metadata, and its record batches read one at a time (all parts of a
    rotated trace, in order). Memory stays bounded by one batch whatever the length of the trace."""

    paths: list[Path]
    metadata: dict[str, Any]
    complete: bool
    channels: list[str]

    def batches(self) -> Iterator[pa.RecordBatch]:
        for p in self.paths:
            try:
                for batch in read_batches(p):
                    for name in ("t_ns", "channel", "energy_j"):
                        if batch.column(name).null_count:
                            raise FastmeterError(f"{p}: column {name!r} has null values; {_FIX}")
                    yield batch
            except (pa.ArrowInvalid, OSError) as e:
                raise FastmeterError(f"{p} is corrupt (a record batch cannot be read: {e}); {_FIX}") from None


def open_trace(path: str | os.PathLike[str]) -> TraceBatches:
    """Like `read_trace`, but reads only the schemas now; `.batches()` streams the rows."""
    p = Path(path)
    if not p.is_file() and (part_paths(p) or partial_path(part_path(p, 0)).is_file()):
        paths = part_paths(p)
        unfinished = partial_path(part_path(p, len(paths)))  # a rotated Parquet trace cut short in its last part
        if unfinished.is_file() and _readable(unfinished):
            paths.append(unfinished)
    elif not p.is_file() and partial_path(p).is_file():
        paths = [partial_path(p)]
    elif not p.is_file():
        raise FastmeterError(f"no trace file at {p}")
    else:
        base = _base_of_part(p)
        paths = part_paths(base) if base is not None and "part" in _metadata_of(p) else [p]
    metas = [_metadata_of(q) for q in paths]
    if len(paths) > 1 and [m.get("part") for m in metas] != list(range(len(paths))):
        raise FastmeterError(f"the parts of {paths[0]} are not numbered 0..{len(paths) - 1}; one is missing or foreign")
    last = metas[-1]
    complete = bool(last.get("complete")) and (len(paths) == 1 or last.get("parts") == len(paths))
    names = [str(c["name"]) for c in last.get("channels", [])]
    tb = TraceBatches(paths, last, complete, names)
    if not names:  # a file written without the channel list: the channels in its rows name them
        first = next(tb.batches(), None)
        tb.channels = [] if first is None else Trace(pa.Table.from_batches([first]), last, complete).channels
    return tb


def _readable(p: Path) -> bool:
    """False for a stream killed before its schema reached the disk: it holds no rows, so it is left out."""
    try:
        _schema_of(p)
    except FastmeterError:
        return False
    return True


def _schema_of(p: Path) -> pa.Schema:
    try:
        with open(p, "rb") as f:
            head = f.read(8)
        if head.startswith(_PARQUET_MAGIC):
            return pq.read_schema(str(p))
        with pa.OSFile(str(p)) as f:
            return ipc.open_file(f).schema if head.startswith(_ARROW_FILE_MAGIC) else ipc.open_stream(f).schema
    except (pa.ArrowInvalid, OSError) as e:
        raise FastmeterError(f"{p} is not a readable fastmeter trace (Arrow IPC or Parquet): {e}") from None


def _metadata_of(p: Path) -> dict[str, Any]:
    """The fastmeter metadata of one file, with the shape readers rely on, and its columns checked."""
    schema = _schema_of(p)
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise FastmeterError(f"{p} is an Arrow/Parquet file but not a fastmeter trace (no fastmeter metadata)")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise FastmeterError(f"{p}: the fastmeter metadata is not valid JSON ({e}); {_FIX}") from None
    check_object(meta, TRACE_METADATA, f"{p}: fastmeter metadata")
    check_columns(schema.empty_table(), TRACE_COLUMNS, str(p), _FIX)
    return meta


def read_batches(p: Path) -> Iterator[pa.RecordBatch]:
    """The record batches of one file (IPC file, Parquet, or a stream up to its last complete batch), one at a
    time."""
    with open(p, "rb") as f:
        head = f.read(8)
    if head.startswith(_PARQUET_MAGIC):
        yield from pq.ParquetFile(str(p)).iter_batches()
    elif head.startswith(_ARROW_FILE_MAGIC):
        with pa.OSFile(str(p)) as f:
            reader = ipc.open_file(f)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
    else:
        yield from read_stream_batches(p)[1]
