"""Read any trace fastmeter writes: a complete Arrow IPC file, Parquet, or a stream cut short by a crash."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from fastmeter.errors import FastmeterError
from fastmeter.io.schema import METADATA_KEY
from fastmeter.io.stream import part_paths, partial_path, read_stream_batches

_ARROW_FILE_MAGIC = b"ARROW1"
_PARQUET_MAGIC = b"PAR1"


@dataclass
class Trace:
    table: pa.Table
    metadata: dict[str, Any]
    complete: bool  # False for a stream that was never finished (the recorder was killed)

    @property
    def channels(self) -> list[str]:
        return [str(c) for c in self.table.column("channel").combine_chunks().dictionary.to_pylist()]


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
                yield from read_batches(p)
            except (pa.ArrowInvalid, OSError) as e:
                raise FastmeterError(f"{p} is corrupt (a record batch cannot be read: {e}); re-record it") from None


def open_trace(path: str | os.PathLike[str]) -> TraceBatches:
    """Like `read_trace`, but reads only the schemas now; `.batches()` streams the rows."""
    p = Path(path)
    if not p.is_file() and part_paths(p):
        paths = part_paths(p)
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
    if not names:  # a file written without the channel list: the channel dictionary names them
        first = next(tb.batches(), None)
        tb.channels = [] if first is None else [str(c) for c in first.column("channel").dictionary.to_pylist()]
    return tb


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
    schema = _schema_of(p)
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise FastmeterError(f"{p} is an Arrow/Parquet file but not a fastmeter trace (no fastmeter metadata)")
    return json.loads(raw)


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
