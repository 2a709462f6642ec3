"""Against a real vLLM (CPU build, tiny random-weight model): streamed token counts and the engine's clock.

Needs the venv from ``tests/servers/vllm_env.sh``; skipped without it unless FASTMETER_REQUIRE_VLLM=1.
``ignore_eos`` makes every request produce exactly ``max_tokens`` tokens, so counts are exact expectations.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import httpx
import pytest

from fastmeter.adapters.openai import OpenAIAdapter
from fastmeter.load import LoadSpec, make_client, run_load
from fastmeter.load.workloads import random_workload
from tests.servers.vllm_server import VllmServer, VllmVenv

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

MAX_TOKENS = 16
OFFLINE_SCRIPT = Path(__file__).resolve().parent.parent / "servers" / "vllm_offline.py"
# Engine timestamps are float seconds; converting them to ns may round by well under 1 µs.
FLOAT_SLACK_NS = 1_000
# The sampler stamps a sample just before reading the synthetic source, whose counter uses its own clock read;
# on a loaded 2-core machine the thread can be preempted in between, so each span edge may be off by this much.
STAMP_SLACK_S = 0.005


def _sse_data(lines: list[str]) -> list[str]:
    """The `data:` payloads of an SSE stream, parsed here independently of fastmeter's parser."""
    return [line[len("data:") :].strip() for line in lines if line.startswith("data:")]


def test_stream_completions_reports_exact_usage(vllm_server: VllmServer) -> None:
    prompt = "the energy of one token"
    body = {
        "model": vllm_server.model,
        "prompt": prompt,
        "max_tokens": MAX_TOKENS,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.Client(base_url=vllm_server.base_url, timeout=60.0) as client:
        expected_prompt_tokens = client.post(
            "/tokenize", json={"model": vllm_server.model, "prompt": prompt}
        ).json()["count"]
        with client.stream("POST", "/v1/completions", json=body, headers={"X-Request-Id": "t-1"}) as r:
            assert r.status_code == 200
            assert r.headers["x-request-id"] == "t-1"
            payloads = _sse_data(list(r.iter_lines()))

    assert payloads[-1] == "[DONE]"
    events = [json.loads(p) for p in payloads[:-1]]
    usage_events = [e for e in events if e.get("usage") and not e["choices"]]
    assert len(usage_events) == 1
    usage = usage_events[0]["usage"]
    assert usage["completion_tokens"] == MAX_TOKENS
    assert usage["prompt_tokens"] == expected_prompt_tokens
    choice_events = [e for e in events if e["choices"]]
    # Random weights may emit byte pieces that decode to "" until completed, so chunks <= tokens.
    assert 1 <= len(choice_events) <= MAX_TOKENS
    assert choice_events[-1]["choices"][0]["finish_reason"] == "length"


def test_load_runner_concurrent_requests_complete_exactly(vllm_server: VllmServer) -> None:
    concurrency, n_requests = 4, 12
    adapter = OpenAIAdapter(vllm_server.model, ignore_eos=True)
    workload = random_workload(n_requests, input_tokens=8, output_tokens=MAX_TOKENS, seed=1)
    spec = LoadSpec(concurrency=concurrency, num_requests=n_requests, timeout_s=120.0)

    async def go():  # type: ignore[no-untyped-def]
        async with make_client(vllm_server.base_url, concurrency) as client:
            return await run_load(client, adapter, workload, spec)

    result = asyncio.run(go())

    records = result.measured
    assert len(records) == n_requests
    for rec in records:
        assert rec.ok, (rec.request_id, rec.status, rec.error)
        assert rec.completion_tokens == MAX_TOKENS
        assert not rec.tokens_counted  # the counts came from the server's usage chunk
        assert rec.finish_reason == "length"
        assert rec.send_ns is not None and rec.first_token_ns is not None and rec.end_ns is not None
        assert result.start_ns <= rec.send_ns <= rec.first_token_ns <= rec.end_ns <= result.end_ns
    # Closed loop with a cap: the first `concurrency` requests are all sent before any can finish.
    events = sorted([(r.send_ns, 1) for r in records] + [(r.end_ns, -1) for r in records])
    in_flight = peak = 0
    for _, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    assert peak == concurrency


def test_offline_engine_timestamps_are_on_our_clock(
    vllm_venv: VllmVenv, tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "offline.json"
    proc = subprocess.run(
        [str(vllm_venv.python), str(OFFLINE_SCRIPT), str(tiny_model_dir), str(MAX_TOKENS), str(out)],
        env=vllm_venv.env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())

    before_ns, after_ns = res["before_ns"], res["after_ns"]
    assert len(res["requests"]) == 3
    for req in res["requests"]:
        assert req["completion_tokens"] == MAX_TOKENS
        assert req["finish_reason"] == "length"
        assert req["prompt_tokens"] >= 1
        assert req["chunk_tokens"] == [1, MAX_TOKENS - 1]
        ts_ns = [req[k] for k in ("send_ns", "scheduled_ns", "first_token_ns", "end_ns")]
        # The engine's timestamps, through the in-process adapter, fall inside our own readings: one clock.
        assert before_ns - FLOAT_SLACK_NS <= ts_ns[0]
        assert ts_ns == sorted(ts_ns), req
        assert ts_ns[-1] <= after_ns + FLOAT_SLACK_NS
        # Constant synthetic power: the energy fastmeter measures over the engine's decode span is P * span.
        span_s = (req["end_ns"] - req["first_token_ns"]) * 1e-9
        expected_j = res["power_w"] * span_s
        assert req["decode_energy_j"] == pytest.approx(expected_j, abs=2 * STAMP_SLACK_S * res["power_w"])
        assert req["energy_j"] > 0
    # Attribution of the generate() call conserves energy: requests + idle = total.
    assert res["requests_j"] + res["idle_j"] == pytest.approx(res["total_j"], rel=1e-9)
    span_s = (res["span_ns"][1] - res["span_ns"][0]) * 1e-9
    assert res["total_j"] == pytest.approx(res["power_w"] * span_s, abs=2 * STAMP_SLACK_S * res["power_w"])


def test_fastmeter_bench_against_vllm_conserves_energy(vllm_server: VllmServer, tmp_path: Path) -> None:
    """`fastmeter bench` end to end on the real server at concurrency 4 (synthetic power: no GPU here)."""
    from click.testing import CliRunner

    from fastmeter.bench.tables import read_arrow
    from fastmeter.cli import main

    out = tmp_path / "run"
    args = {
        "server-kind": "openai", "base-url": vllm_server.base_url, "model": vllm_server.model,
        "ignore-eos": "true", "workload-kind": "random", "input-tokens": "16", "output-tokens": str(MAX_TOKENS),
        "concurrency": "4", "num-requests": "16", "warmup-requests": "2", "sources": "synthetic",
        "attribution": "token-weighted", "metrics-interval-s": "0.2",
        # A request to the tiny model takes well under a second: a server that stops answering fails the test in
        # a minute, with its log, instead of holding CI for the default 600 s per request.
        "timeout-s": "60",
    }
    argv = ["bench", "-o", str(out), "--allow-degraded", *[x for k, v in args.items() for x in (f"--{k}", v)]]
    r = CliRunner().invoke(main, argv)  # synthetic power was asked for: --allow-degraded accepts it
    assert r.exit_code == 0, f"{r.output}\n{vllm_server.log_tail()}"
    run = json.loads((out / "run.json").read_text())
    assert run["validity"]["verdict"] == "synthetic"
    requests = read_arrow(out / "requests.arrow").to_pandas()
    measured = requests[~requests.warmup]
    assert len(measured) == 16 and (measured.status == "ok").all(), (
        f"{measured[['status', 'error']].value_counts()}\n{vllm_server.log_tail()}"
    )
    assert (measured.completion_tokens == MAX_TOKENS).all() and not measured.tokens_counted.any()
    a = run["attribution"]
    assert a["requests_j"] + a["idle_j"] == pytest.approx(a["total_j"], rel=1e-9)
    assert measured.energy_j.sum() == pytest.approx(a["requests_j"], rel=1e-9)
    assert (measured.energy_j > 0).all()
    assert run["summary"]["output_tokens"] == 16 * MAX_TOKENS
    metrics = read_arrow(out / "metrics.arrow").to_pandas()
    assert "vllm:num_requests_running" in set(metrics["name"].astype(str))
