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
    with pa.OSFile(str(path)) as f:
        reader = ipc.open_stream(f)
        batches = []
        try:
            for batch in reader:
                batches.append(batch)
        except (pa.ArrowInvalid, OSError):
            pass  # the writer died mid-batch: everything flushed before is intact
        return pa.Table.from_batches(batches, schema=reader.schema)


def read_trace(path: str | os.PathLike[str]) -> Trace:
    p = Path(path)
    if not p.is_file():
        raise FastmeterError(f"no trace file at {p}")
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
