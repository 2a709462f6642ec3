"""Read any trace fastmeter writes: a complete Arrow IPC file, Parquet, or a stream cut short by a crash."""

from __future__ import annotations

import json
import os
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
    check_columns,
    check_object,
)

_ARROW_FILE_MAGIC = b"ARROW1"

TRACE_COLUMNS = {"t_ns": INT64, "channel": STRINGS, "energy_j": FLOAT, "power_w": FLOAT}
SAMPLER_STATS = {"rate_hz": NUMBER, "jitter_p50_us": NUMBER, "jitter_p99_us": NUMBER, "jitter_max_us": NUMBER,
                 "missed": INT, "dropped": INT, "polls": INT, "errors": TEXT_MAP, "update_period_s": NUMBER_MAP}
# The metadata keys readers use (docs/format.md), with the shape each must have.
TRACE_METADATA = {
    "format_version": INT, "sampler": {"period_us": INT, "sources": TEXT_LIST}, "command": TEXT_LIST,
    "exit_code": INT, "complete": BOOL, "sampler_stats": SAMPLER_STATS, "idle_baseline_w": NUMBER_MAP,
    "idle_baseline_s": NUMBER, "stopped_by_signal": INT, "interrupted": BOOL, "fingerprint": OBJECT,
    "calibration": OBJECT,
}
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
    fix = "it was not written by fastmeter, or was damaged; record it again with `fastmeter trace`"
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise FastmeterError(f"{p}: the fastmeter metadata is not valid JSON ({e}); {fix}") from None
    check_object(meta, TRACE_METADATA, f"{p}: fastmeter metadata")
    check_columns(table, TRACE_COLUMNS, str(p), fix)
    for name in ("t_ns", "channel", "energy_j"):
        if table.column(name).null_count:
            raise FastmeterError(f"{p}: column {name!r} has null values; {fix}")
    return Trace(table, meta, meta.get("complete") is True)
