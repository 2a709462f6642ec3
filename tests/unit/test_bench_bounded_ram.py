"""bench keeps in RAM only the requests in flight and those not yet on disk (issue 12), and the end of the run,
computed from what streamed to disk, gives what the in-memory path gives on the same requests.

The load runs against the emulated server; the request log is driven with real record streams flushed by the test
(the recorder's thread does it on its cadence in a run), so when rows reach disk is under the test's control."""

from __future__ import annotations

import asyncio
import gc
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fastmeter.adapters import OpenAIAdapter
from fastmeter.adapters.base import RequestRecord
from fastmeter.adapters.native import NativeClient
from fastmeter.attribution import BoundedCurve
from fastmeter.bench.attribute_columns import attribute_columns
from fastmeter.bench.column_figures import figures_of_columns
from fastmeter.bench.energy import attribute_requests
from fastmeter.bench.readback import NO_NS, read_columns, write_chunks, write_requests
from fastmeter.bench.request_log import RequestLog
from fastmeter.bench.summary import RequestFigures
from fastmeter.bench.tables import CHUNKS_SCHEMA, REQUESTS_SCHEMA, read_arrow, requests_table
from fastmeter.load import LoadResult, LoadSpec, make_client, run_load
from fastmeter.load.live import LiveRecords
from fastmeter.load.native_runner import BACKLOG_PER_SLOT, NO_CAP_CONNECTIONS, run_load_native
from fastmeter.load.workloads import random_workload
from fastmeter.recorder import RecordStream
from tests.emulators.fake_server import FakeServer, Request, Script, Send, Sleep, sse

T0_NS = 10**15
POWER_W = 180.0


def alive_records() -> set[int]:
    """ids of the RequestRecord objects that exist now (they take no weak references: slots)."""
    gc.collect()
    return {id(o) for o in gc.get_objects() if isinstance(o, RequestRecord)}


def ok_stream(_req: Request) -> Script:
    return Script(
        [
            Sleep(0.005),
            Send(sse({"choices": [{"text": "x", "finish_reason": None}]})),
            Send(sse({"choices": [{"text": "y", "finish_reason": "length"}]})),
            Send(sse({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 2}})),
            Send(sse("[DONE]")),
        ]
    )


@pytest.mark.parametrize("transport", ["asyncio", "native"])
def test_the_load_holds_only_the_requests_in_flight(transport: str) -> None:
    concurrency, n = 3, 60
    live = LiveRecords()
    done: list[int] = []

    def on_done(rec: RequestRecord) -> None:  # as bench's request log does once the rows are written
        live.remove(rec)
        done.append(id(rec))

    spec = LoadSpec(concurrency=concurrency, num_requests=n, warmup_requests=2)

    async def go(url: str) -> LoadResult:
        kw = {"records": live, "on_done": on_done, "keep_records": False}
        if transport == "native":
            with NativeClient(url, concurrency or NO_CAP_CONNECTIONS) as native:
                return await run_load_native(native, OpenAIAdapter("m"), random_workload(4, 3, 2), spec, **kw)
        async with make_client(url, concurrency) as client:
            return await run_load(client, OpenAIAdapter("m"), random_workload(4, 3, 2), spec, **kw)

    before = alive_records()
    with FakeServer(ok_stream) as srv:
        result = asyncio.run(go(srv.url))
    # The native thread also queues one request per slot beyond those sent (native_runner.BACKLOG_PER_SLOT).
    bound = concurrency * (1 + (BACKLOG_PER_SLOT if transport == "native" else 0))
    assert len(done) == n + 2 and len(live) == 0 and result.records == []
    assert 1 <= live.peak <= bound
    assert alive_records() - before == set()  # nothing in the load kept a finished request


def make_records(rng: np.random.Generator, n: int) -> list[RequestRecord]:
    """Requests of random lengths and chunk counts, some failed, some bunched, some without a first token."""
    out = []
    for i in range(n):
        send = T0_NS + int(rng.integers(0, 10**9))
        end = send + int(rng.integers(1, 3 * 10**8))
        k = int(rng.integers(0, 7))
        chunks = sorted(int(t) for t in rng.integers(send, end + 1, k))
        rec = RequestRecord(
            f"req-{i}",
            scheduled_ns=send - int(rng.integers(0, 10**6)),
            send_ns=send,
            first_token_ns=chunks[0] if chunks else None,
            end_ns=end,
            chunk_t_ns=chunks,
            chunk_tokens=[int(x) for x in rng.integers(0, 3, k)],
            prompt_tokens=int(rng.integers(1, 50)),
            completion_tokens=int(rng.integers(0, 20)),
            status="ok" if rng.random() < 0.85 else "http_error",
            warmup=i < 3,
            bunched=bool(rng.random() < 0.2),
        )
        out.append(rec)
    return out


def streams(d: Path) -> tuple[RecordStream, RecordStream]:
    return RecordStream(d / "requests.arrow", REQUESTS_SCHEMA, {}), RecordStream(d / "chunks.arrow", CHUNKS_SCHEMA, {})


def test_finished_requests_leave_ram_once_their_rows_are_on_disk(tmp_path: Path) -> None:
    req, chunks = streams(tmp_path)
    log = RequestLog(req, chunks)
    records = make_records(np.random.default_rng(1), 30)
    first = {id(r) for r in records[:20]}
    for r in records[:20]:
        log.live.append(r)
        log.finished(r)
    del r
    records = records[20:]
    assert first <= alive_records()  # not on disk yet: kept
    req.flush()
    chunks.flush()
    log.live.append(records[0])
    log.finished(records[0])  # the next request to finish finds the others written
    assert first & alive_records() == set() and len(log.live) == 0


def linear_curve(t_ns: np.ndarray) -> BoundedCurve:
    e = POWER_W * (np.asarray(t_ns, dtype=np.int64) - T0_NS) * 1e-9
    return BoundedCurve(e, np.zeros(len(e)), {})


@pytest.mark.parametrize("method", ["time-share", "token-weighted"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_end_of_a_run_from_disk_equals_the_in_memory_path(tmp_path: Path, method: str, seed: int) -> None:
    """Requests finish in random order, flushes fall at random points, the last ones are still in flight at an
    interrupt: attribution over the read-back columns and gathered chunks (in small batches) equals the in-memory
    attribution of the same records, and so do the summary's figures and the written requests.arrow."""
    rng = np.random.default_rng(seed)
    records = make_records(rng, 200)
    req, chunks = streams(tmp_path)
    log = RequestLog(req, chunks)
    for r in records:
        log.live.append(r)
    for r in records[:150]:
        log.finished(r)
        if rng.random() < 0.1:
            req.flush()
            chunks.flush()
    stop_ns = T0_NS + 10**9 // 2
    staged = log.close(stop_ns)  # the other 50 are closed at the stop instant
    assert staged.rows < 150 and staged.rows + len(staged.tail) == 200
    final = records[: staged.rows] + staged.tail  # the order of requests.arrow's rows
    cols = read_columns(staged)
    files = write_chunks(staged, tmp_path / "chunks.arrow")

    span = (T0_NS, stop_ns)
    targets = [i for i, r in enumerate(final) if not r.warmup and r.send_ns is not None and r.end_ns is not None]
    a, info = attribute_columns(
        linear_curve, cols, np.array(targets), files, span, method, 20.0, 0.0, batch_requests=7, batch_chunks=9
    )
    want, want_info = attribute_requests(linear_curve, [final[i] for i in targets], span, method, 20.0, 0.0)
    for k in ("energy_j", "prefill_energy_j", "net_energy_j", "uncertainty_j", "attributed_s"):
        np.testing.assert_array_equal(getattr(a, k), getattr(want, k))
    assert (a.total_j, a.idle_j, info) == (want.total_j, want.idle_j, want_info)
    assert math.fsum(a.energy_j) + a.idle_j == pytest.approx(a.total_j, rel=1e-12)

    measured = [r for r in final if not r.warmup]
    got = figures_of_columns(cols, ~cols.warmup, files)
    assert got == RequestFigures.of_records(measured)

    per_request = {"energy_j": np.full(len(final), np.nan)}
    per_request["energy_j"][targets] = a.energy_j
    write_requests(staged, tmp_path / "requests.arrow", per_request)
    assert read_arrow(tmp_path / "requests.arrow").equals(requests_table(final, per_request))
    chunk_rows = read_arrow(tmp_path / "chunks.arrow")
    assert chunk_rows.column("t_ns").to_pylist() == [t for r in final for t in r.chunk_t_ns]
    assert cols.send_ns.tolist() == [NO_NS if r.send_ns is None else r.send_ns for r in final]


def test_a_torn_write_keeps_the_unwritten_requests_for_the_final_files(tmp_path: Path) -> None:
    """After a failed write the streams stop: requests whose rows never reached disk stay in RAM and are written at
    the end, after the prefix that did."""
    req, chunks = streams(tmp_path)
    log = RequestLog(req, chunks)
    records = make_records(np.random.default_rng(3), 12)
    for r in records[:5]:
        log.finished(r)
    req.flush()
    chunks.flush()
    for r in records[5:]:
        log.finished(r)
    req.flush()  # the requests' rows of the second flush are written, their chunks never are
    staged = log.close(None)
    assert (staged.rows, len(staged.tail)) == (5, 7)
    assert staged.chunk_rows == sum(len(r.chunk_t_ns) for r in records[:5])
    cols = read_columns(staged)
    assert cols.end_ns.tolist() == [r.end_ns for r in records]
    write_chunks(staged, tmp_path / "chunks.arrow")
    assert read_arrow(tmp_path / "chunks.arrow").column("tokens").to_pylist() == [
        k for r in records for k in r.chunk_tokens
    ]
    assert pa.ipc.open_file(pa.OSFile(str(tmp_path / "chunks.arrow"))).schema.names == CHUNKS_SCHEMA.names
