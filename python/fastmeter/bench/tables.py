"""Request records and metric scrapes as Arrow tables (requests.arrow, chunks.arrow, metrics.arrow)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from fastmeter.adapters.base import RequestRecord
from fastmeter.adapters.prometheus import MetricRow
from fastmeter.io.stream import OutputError, replace_durably

# A request in flight (or waiting for a slot) when the run was interrupted: it ends at the interrupt instant.
STATUS_CANCELLED = "cancelled"

REQUESTS_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("warmup", pa.bool_()),
        ("status", pa.string()),
        ("http_status", pa.int32()),
        ("error", pa.string()),
        ("finish_reason", pa.string()),
        ("scheduled_ns", pa.int64()),
        ("send_ns", pa.int64()),
        ("first_token_ns", pa.int64()),
        ("end_ns", pa.int64()),
        ("max_tokens", pa.int32()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("tokens_counted", pa.bool_()),
        ("n_chunks", pa.int32()),
        ("reads", pa.int32()),
        ("bunched", pa.bool_()),
    ]
)
# request_id is a plain string: chunks stream in batches, and an IPC file cannot change a dictionary between them.
CHUNKS_SCHEMA = pa.schema([("request_id", pa.string()), ("t_ns", pa.int64()), ("tokens", pa.int32())])


def status_of(r: RequestRecord) -> str:
    return r.status if r.end_ns is not None else STATUS_CANCELLED


def requests_table(records: Sequence[RequestRecord], per_request: dict[str, np.ndarray] | None = None) -> pa.Table:
    """One row per request (REQUESTS_SCHEMA); `per_request` adds aligned columns (energy_j, prefill_energy_j...)."""
    cols: dict[str, pa.Array] = {
        "request_id": pa.array([r.request_id for r in records], pa.string()),
        "warmup": pa.array([r.warmup for r in records], pa.bool_()),
        "status": pa.array([status_of(r) for r in records], pa.string()),
        "http_status": pa.array([r.http_status for r in records], pa.int32()),
        "error": pa.array([r.error for r in records], pa.string()),
        "finish_reason": pa.array([r.finish_reason for r in records], pa.string()),
        "scheduled_ns": pa.array([r.scheduled_ns for r in records], pa.int64()),
        "send_ns": pa.array([r.send_ns for r in records], pa.int64()),
        "first_token_ns": pa.array([r.first_token_ns for r in records], pa.int64()),
        "end_ns": pa.array([r.end_ns for r in records], pa.int64()),
        "max_tokens": pa.array([r.max_tokens for r in records], pa.int32()),
        "prompt_tokens": pa.array([r.prompt_tokens for r in records], pa.int64()),
        "completion_tokens": pa.array([r.completion_tokens for r in records], pa.int64()),
        "tokens_counted": pa.array([r.tokens_counted for r in records], pa.bool_()),
        "n_chunks": pa.array([len(r.chunk_t_ns) for r in records], pa.int32()),
        "reads": pa.array([r.reads for r in records], pa.int32()),
        "bunched": pa.array([r.bunched for r in records], pa.bool_()),
    }
    for name, values in (per_request or {}).items():
        cols[name] = pa.array(values, pa.float64(), mask=np.isnan(values))
    return pa.table(cols)


def chunks_table(records: Sequence[RequestRecord]) -> pa.Table:
    """One row per streamed chunk: when its bytes arrived and how many tokens it carried."""
    ids = [r.request_id for r in records for _ in r.chunk_t_ns]
    return pa.table(
        {
            "request_id": pa.array(ids, pa.string()),
            "t_ns": pa.array([t for r in records for t in r.chunk_t_ns], pa.int64()),
            "tokens": pa.array([k for r in records for k in r.chunk_tokens], pa.int32()),
        },
        schema=CHUNKS_SCHEMA,
    )


METRICS_SCHEMA = pa.schema(
    [("t_ns", pa.int64()), ("name", pa.dictionary(pa.int32(), pa.string())), ("labels", pa.string()),
     ("value", pa.float64())]
)


def metrics_table(rows: Sequence[MetricRow]) -> pa.Table:
    return pa.table(
        {
            "t_ns": pa.array([r.t_ns for r in rows], pa.int64()),
            "name": pa.array([r.name for r in rows], pa.string()).dictionary_encode(),
            "labels": pa.array([json.dumps(r.labels, sort_keys=True) for r in rows], pa.string()),
            "value": pa.array([r.value for r in rows], pa.float64()),
        },
        schema=METRICS_SCHEMA,
    )


def write_arrow(table: pa.Table, path: Path) -> None:
    """An Arrow IPC file, written beside and renamed over `path` (fsynced): readers see the old or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with pa.OSFile(str(tmp), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)
        replace_durably(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"writing {path} failed: {e.strerror or e}; the other files of the run are kept") from None


def read_arrow(path: Path) -> pa.Table:
    with pa.OSFile(str(path)) as f:
        return pa.ipc.open_file(f).read_all()
