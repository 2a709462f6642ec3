"""Chunk timestamps against the instant each chunk left the server (stamp_server writes its CLOCK_MONOTONIC send
time into every chunk): no chunk may be stamped before it was sent, and every chunk must be there."""

from __future__ import annotations

import asyncio

from fastmeter.adapters import OpenAIAdapter, wait_until_ready
from fastmeter.load import LoadResult, LoadSpec, make_client, run_load
from fastmeter.load.workloads import random_workload
from tests.emulators.nvml import default_cache_dir
from tests.emulators.stamp_server import StampServer, build_stamp_server, send_stamps_ns


def run(url: str, concurrency: int, n_requests: int, n_tokens: int) -> LoadResult:
    spec = LoadSpec(concurrency=concurrency, num_requests=n_requests, timeout_s=60.0)

    async def go() -> LoadResult:
        async with make_client(url, concurrency) as client:
            workload = random_workload(n_requests, 4, n_tokens, seed=0)
            return await run_load(client, OpenAIAdapter("m"), workload, spec)

    return asyncio.run(go())


def test_every_chunk_is_stamped_after_the_server_sent_it() -> None:
    exe = build_stamp_server(default_cache_dir())
    with StampServer(exe, gap_s=0.002, prefill_s=0.005) as srv:
        assert wait_until_ready(srv.url, timeout_s=10.0) == "/v1/models"
        result = run(srv.url, concurrency=8, n_requests=16, n_tokens=12)
    assert len(result.measured) == 16
    for rec in result.measured:
        assert rec.ok, rec.error
        sent = send_stamps_ns(rec.text)
        assert len(sent) == len(rec.chunk_t_ns) == rec.completion_tokens == 12
        assert all(rx >= tx for rx, tx in zip(rec.chunk_t_ns, sent)), "a chunk was stamped before it was sent"
        assert rec.send_ns < sent[0]  # the server answered this request, after it was sent
        assert not rec.bunched and rec.reads >= 2  # 2 ms apart: the stream really streamed
