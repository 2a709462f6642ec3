"""Read any trace fastmeter writes: a complete Arrow IPC file, Parquet, or a stream cut short by a crash."""

from __future__ import annotations

import json
import os
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


def _read_stream_tolerant(path: Path) -> pa.Table:
    """Every complete batch of a stream, ignoring a torn last one."""
    schema, batches = read_stream_batches(path)
    return pa.Table.from_batches(list(batches), schema=schema)


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """One trace: a file, the stream of an unfinished Parquet output (`<name>.partial.arrow`), or the numbered
    parts of a rotated trace (`trace.0000.arrow`, ... read as one when given `trace.arrow` or any part)."""
    p = Path(path)
    if not p.is_file() and part_paths(p):
        return _read_parts(part_paths(p), {})
    if not p.is_file() and partial_path(p).is_file():
        p = partial_path(p)
    if not p.is_file():
        raise FastmeterError(f"no trace file at {p}")
    one = _read_one(p)
    base = _base_of_part(p)
    if base is None or "part" not in one.metadata:
        return one
    return _read_parts(part_paths(base), {p: one})


def _base_of_part(p: Path) -> Path | None:
    """`trace.0003.arrow` -> `trace.arrow`; None when `p` is not a numbered part."""
    stem, dot, index = p.stem.rpartition(".")
    return p.with_name(stem + p.suffix) if dot and len(index) >= 4 and index.isdigit() else None


def _read_parts(parts: list[Path], already: dict[Path, Trace]) -> Trace:
    traces = [already.get(q) or _read_one(q) for q in parts]
    numbers = [t.metadata.get("part") for t in traces]
    if numbers != list(range(len(parts))):
        raise FastmeterError(
            f"the parts of {parts[0]} are not numbered 0..{len(parts) - 1} ({numbers}); one is missing or foreign"
        )
    last = traces[-1].metadata
    table = pa.concat_tables([t.table.replace_schema_metadata(None) for t in traces], promote_options="permissive")
    table = table.replace_schema_metadata(traces[-1].table.schema.metadata)
    complete = traces[-1].complete and last.get("parts") == len(parts)
    return Trace(table, {**last, "part_files": [str(q) for q in parts]}, complete)


def _read_one(p: Path) -> Trace:
    try:
        with open(p, "rb") as f:
            head = f.read(8)
        if head.startswith(_PARQUET_MAGIC):
            table = pq.read_table(str(p))
        elif head.startswith(_ARROW_FILE_MAGIC):
            with pa.OSFile(str(p)) as f:
                table = ipc.open_file(f).read_all()
        else:
            table = _read_stream_tolerant(p)
    except (pa.ArrowInvalid, OSError) as e:
        raise FastmeterError(f"{p} is not a readable fastmeter trace (Arrow IPC or Parquet): {e}") from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise FastmeterError(f"{p} is an Arrow/Parquet file but not a fastmeter trace (no fastmeter metadata)")
    meta = json.loads(raw)
    return Trace(table, meta, bool(meta.get("complete", False)))
