"""Per-request attribution of a bench run from what it streamed: the requests' instants from `RequestColumns`, their
chunks gathered from chunks.arrow, fed to the streamed sweep in order of start, a bounded batch at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from fastmeter.attribution import Attribution
from fastmeter.attribution_stream import RequestBatch
from fastmeter.bench.energy import (
    REQUEST_BATCH,
    Curve,
    attribute_by_activity_in_memory,
    attribute_in_start_order,
)
from fastmeter.bench.readback import NO_NS, ChunkFile, RequestColumns

# Chunks per request batch: a batch of long responses is cut by its chunks (~24 bytes each while in a batch).
CHUNK_BATCH = 1 << 20


def attribute_columns(
    curve: Curve,
    cols: RequestColumns,
    rows: np.ndarray,
    chunks: ChunkFile,
    span_ns: tuple[int, int],
    method: str,
    idle_power_w: float | None,
    update_period_s: float,
    knots_ns: np.ndarray | None = None,
    *,
    batch_requests: int = REQUEST_BATCH,
    batch_chunks: int = CHUNK_BATCH,
) -> tuple[Attribution, dict[str, Any]]:
    """`bench.energy.attribute_requests` for the requests at `rows` of `cols` (all attributable): the result's
    request i is row `rows[i]`. time-share and token-weighted stream, in batches of at most `batch_requests`
    requests and `batch_chunks` chunks; activity holds them all (it fits a model to the whole run)."""
    if method == "activity":
        (batch,) = _batches(cols, rows, chunks, len(rows), max(1, int(cols.n_chunks[rows].sum())))
        prompt = cols.prompt_tokens[rows]
        return attribute_by_activity_in_memory(curve, batch, prompt, span_ns, idle_power_w, update_period_s, knots_ns)
    order = np.argsort(cols.send_ns[rows], kind="stable")
    batches = _batches(cols, rows[order], chunks, batch_requests, batch_chunks)
    return attribute_in_start_order(curve, batches, order, span_ns, method, idle_power_w, update_period_s)


def _batches(
    cols: RequestColumns, rows: np.ndarray, chunks: ChunkFile, max_requests: int, max_chunks: int
) -> Iterator[RequestBatch]:
    """The requests at `rows`, in that order, cut into batches of at most `max_requests` requests and (unless one
    request has more) `max_chunks` chunks."""
    first_chunk = cols.chunk_starts()
    n = cols.n_chunks[rows]
    cum = np.cumsum(n)
    lo = 0
    while lo < len(rows):
        before = int(cum[lo - 1]) if lo else 0
        hi = min(lo + max_requests, int(np.searchsorted(cum, before + max_chunks, side="right")))
        part = rows[lo : max(hi, lo + 1)]
        t, k = chunks.gather(first_chunk[part], cols.n_chunks[part])
        ft = cols.first_token_ns[part]
        has = ft != NO_NS
        yield RequestBatch(
            cols.send_ns[part],
            cols.end_ns[part],
            np.ma.masked_array(np.where(has, ft, 0), mask=~has),
            np.concatenate([[0], np.cumsum(cols.n_chunks[part])]).astype(np.int64),
            t,
            k,
        )
        lo += len(part)
