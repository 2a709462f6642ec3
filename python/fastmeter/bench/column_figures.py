"""The summary's request figures of a bench run from what it streamed: counts, token sums, TTFT and E2E from
`RequestColumns` (one value per request), inter-token gaps from chunks.arrow read back a record batch at a time
(`stream_percentile`, exact). The same numbers `RequestFigures.of_records` gives on the records in RAM."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fastmeter.bench.readback import NO_NS, ChunkFile, RequestColumns
from fastmeter.bench.stream_percentile import percentiles
from fastmeter.bench.summary import RequestFigures

NS_PER_MS = 1e6


def figures_of_columns(cols: RequestColumns, measured: np.ndarray, chunks: ChunkFile) -> RequestFigures:
    """Figures of the requests where `measured` (bool per row) is true."""
    ok = measured & cols.ok
    sent = ok & (cols.send_ns != NO_NS)  # the latencies of ok requests that were sent and ended
    first = sent & (cols.first_token_ns != NO_NS)
    ttft = (cols.first_token_ns[first] - cols.send_ns[first]) / NS_PER_MS
    e2e = (cols.end_ns[sent] - cols.send_ns[sent]) / NS_PER_MS
    streamed = sent & ~cols.bunched  # bunched responses have no inter-token gaps to speak of
    itl = percentiles(lambda: _gaps_ns(cols, streamed, chunks), [50, 99], NS_PER_MS)
    return RequestFigures(
        requests=int(np.count_nonzero(measured)),
        ok=int(np.count_nonzero(ok)),
        input_tokens=int(cols.prompt_tokens[ok].sum()),
        output_tokens=int(cols.completion_tokens[ok].sum()),
        bunched=int(np.count_nonzero(ok & cols.bunched)),
        latency_ms={"ttft": _p50_p99(ttft), "itl": (itl[0], itl[1]), "e2e": _p50_p99(e2e)},
    )


def _p50_p99(values: np.ndarray) -> tuple[float, float]:
    if not len(values):
        return np.nan, np.nan
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def _gaps_ns(cols: RequestColumns, eligible: np.ndarray, chunks: ChunkFile) -> Iterator[np.ndarray]:
    """Gaps between consecutive token-carrying chunks of each eligible request, a chunk batch at a time."""
    ends = np.cumsum(cols.n_chunks)  # each request's chunk rows end here (exclusive)
    last_req, last_t = -1, 0  # the previous batch's last kept chunk: a request's chunks may span two batches
    for first_row, t, k in chunks.batches():
        req = np.searchsorted(ends, first_row + np.arange(len(t)), side="right")
        keep = (k > 0) & eligible[req]
        req, t = np.concatenate([[last_req], req[keep]]), np.concatenate([[last_t], t[keep]])
        yield (t[1:] - t[:-1])[req[1:] == req[:-1]]
        last_req, last_t = int(req[-1]), int(t[-1])
