"""The load generator against the fake server: concurrency cap, arrival schedule, warm-up, failures kept."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fastmeter.adapters import OpenAIAdapter
from fastmeter.adapters.native import NativeClient
from fastmeter.load import LoadResult, LoadSpec, load_config, make_client, run, run_load
from fastmeter.load.arrivals import arrival_times_s
from fastmeter.load.native_runner import NO_CAP_CONNECTIONS, run_load_native
from fastmeter.load.workloads import random_workload
from tests.emulators.fake_server import FakeServer, Request, Script, Send, Sleep, sse

OK_STREAM = [
    Send(sse({"choices": [{"text": "x", "finish_reason": "length"}]})),
    Send(sse({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}})),
    Send(sse("[DONE]")),
]


def slow_ok(_req: Request) -> Script:
    return Script([Sleep(0.03), *OK_STREAM])


@pytest.fixture(params=["asyncio", "native"])
def transport(request: pytest.FixtureRequest) -> str:
    """Every load-runner test runs on both transports: they must keep the same schedule, caps and records."""
    return str(request.param)


def run_against(srv: FakeServer, spec: LoadSpec, transport: str, n_workload: int = 4) -> LoadResult:
    workload = random_workload(n_workload, 3, 1)

    async def go() -> LoadResult:
        if transport == "native":
            with NativeClient(srv.url, spec.concurrency or NO_CAP_CONNECTIONS) as native:
                return await run_load_native(native, OpenAIAdapter("m"), workload, spec)
        async with make_client(srv.url, spec.concurrency) as client:
            return await run_load(client, OpenAIAdapter("m"), workload, spec)

    return asyncio.run(go())


def test_closed_loop_concurrency_cap_is_never_exceeded(transport: str) -> None:
    with FakeServer(slow_ok) as srv:
        result = run_against(srv, LoadSpec(concurrency=3, num_requests=15), transport)
    assert srv.max_in_flight == 3
    assert len(result.records) == 15 and all(r.status == "ok" for r in result.records)
    assert [r.request_id for r in result.records] == [f"req-{i}" for i in range(15)]
    assert sorted(q.headers["x-request-id"] for q in srv.requests) == sorted(r.request_id for r in result.records)


def test_open_loop_follows_the_seeded_schedule_under_a_cap(transport: str) -> None:
    spec = LoadSpec(concurrency=2, rate=100.0, burstiness=0.5, num_requests=12, seed=5)
    with FakeServer(slow_ok) as srv:
        result = run_against(srv, spec, transport)
    assert srv.max_in_flight <= 2
    expected = arrival_times_s(12, 100.0, 0.5, seed=5)
    assert [r.scheduled_ns - result.start_ns for r in result.records] == [int(t * 1e9) for t in expected]
    for r in result.records:
        assert r.send_ns >= r.scheduled_ns  # released on schedule, then maybe queued for a slot


def test_duration_stops_releasing_arrivals(transport: str) -> None:
    spec = LoadSpec(rate=50.0, duration_s=0.3, seed=2)
    with FakeServer(lambda _r: Script(OK_STREAM)) as srv:
        result = run_against(srv, spec, transport)
    n_expected = sum(t < 0.3 for t in arrival_times_s(200, 50.0, 1.0, seed=2))
    assert len(result.records) == n_expected
    assert len(srv.requests) == n_expected


def test_closed_loop_for_a_duration_keeps_the_cap_busy(transport: str) -> None:
    spec = LoadSpec(concurrency=2, duration_s=0.25)
    with FakeServer(slow_ok) as srv:
        result = run_against(srv, spec, transport)
    assert srv.max_in_flight == 2
    assert all(r.ok for r in result.records) and len(srv.requests) == len(result.records)
    assert all(r.scheduled_ns - result.start_ns < 250_000_000 for r in result.records)
    # ~30 ms per request, two at a time: at least 2 per slot fit in 0.25 s; the last ends after the duration.
    assert len(result.records) >= 4 and result.end_ns - result.start_ns >= 250_000_000


def test_warmup_runs_first_and_is_marked(transport: str) -> None:
    with FakeServer(slow_ok) as srv:
        result = run_against(srv, LoadSpec(concurrency=2, num_requests=4, warmup_requests=3), transport)
    warm = [r for r in result.records if r.warmup]
    assert [r.request_id for r in warm] == ["req-warmup-0", "req-warmup-1", "req-warmup-2"]
    assert len(result.measured) == 4
    assert max(r.end_ns for r in warm) <= min(r.send_ns for r in result.measured)
    assert result.start_ns >= max(r.end_ns for r in warm)


def test_failures_are_recorded_and_the_run_goes_on(transport: str) -> None:
    def flaky(req: Request) -> Script:
        i = int(req.headers["x-request-id"].rsplit("-", 1)[1])
        if i % 3 == 1:
            return Script([Send(b"overloaded")], status=503, content_type="text/plain", chunked=False)
        if i % 3 == 2:
            return Script([Sleep(5)])
        return Script(OK_STREAM)

    with FakeServer(flaky) as srv:
        result = run_against(srv, LoadSpec(concurrency=4, num_requests=9, timeout_s=0.2), transport)
    statuses = [r.status for r in result.records]
    assert statuses == ["ok", "http_error", "timeout"] * 3
    assert all(r.end_ns is not None for r in result.records)


def test_run_from_toml_config_with_metrics(tmp_path: Path, transport: str) -> None:
    metrics = b'vllm:num_requests_running{model_name="m"} 1\nother_metric 2\n'

    def handler(req: Request) -> Script:
        if req.path == "/metrics":
            return Script([Send(metrics)], content_type="text/plain", chunked=False)
        return Script([Sleep(0.02), *OK_STREAM])

    with FakeServer(handler) as srv:
        cfg_path = tmp_path / "c.toml"
        cfg_path.write_text(f"""
[server]
kind = "openai"
base_url = "{srv.url}"
model = "m"
ignore_eos = true
[workload]
kind = "random"
input_tokens = 5
output_tokens = 2
template = "Q: {{prompt}}"
[load]
client = "{transport}"
concurrency = 2
num_requests = 6
warmup_requests = 1
[metrics]
interval_s = 0.01
""")
        result = run(load_config(cfg_path))
    assert len(result.measured) == 6 and all(r.ok for r in result.records)
    assert result.client == transport
    bodies = [q.json for q in srv.requests if q.path != "/metrics"]
    assert all(b["prompt"].startswith("Q: ") and len(b["prompt"].split()) == 6 for b in bodies)
    assert all(b["ignore_eos"] is True and b["max_tokens"] == 2 for b in bodies)
    assert result.scrape_errors == 0 and len(result.metrics) >= 2
    assert {m.name for m in result.metrics} == {"vllm:num_requests_running"}
    assert [m.t_ns for m in result.metrics] == sorted(m.t_ns for m in result.metrics)
