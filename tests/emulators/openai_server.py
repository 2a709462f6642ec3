"""A scripted OpenAI-compatible streaming server for bench tests: fixed token timing, a usage chunk, optional
failures — on top of FakeServer."""

from __future__ import annotations

from collections.abc import Callable

from fastmeter.adapters.ready import READY_PATHS
from tests.emulators.fake_server import FakeServer, Request, Script, Send, Sleep, sse


def completion_script(n_tokens: int, token_gap_s: float, prefill_s: float) -> Script:
    steps: list = [Sleep(prefill_s)]
    for i in range(n_tokens):
        if i:
            steps.append(Sleep(token_gap_s))
        finish = "length" if i == n_tokens - 1 else None
        steps.append(Send(sse({"choices": [{"index": 0, "text": f" t{i}", "finish_reason": finish}]})))
    steps.append(Send(sse({"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": n_tokens}})))
    steps.append(Send(sse("[DONE]")))
    return Script(steps)


def openai_server(
    token_gap_s: float = 0.005, prefill_s: float = 0.01, fail: Callable[[int], bool] = lambda i: False
) -> FakeServer:
    """Each request streams `max_tokens` tokens; request number i (in arrival order) fails with HTTP 500 when
    fail(i). GET /v1/models and /health answer 200 (the readiness check) and do not count as requests."""
    counter = {"n": 0}

    def handler(req: Request) -> Script:
        if req.method == "GET" and req.path in READY_PATHS:
            return Script(
                [Send(b'{"object": "list", "data": [{"id": "m"}]}')], content_type="application/json", chunked=False
            )
        i = counter["n"]
        counter["n"] += 1
        if fail(i):
            return Script(
                [Sleep(prefill_s), Send(b'{"error": "scripted failure"}')],
                status=500,
                content_type="application/json",
                chunked=False,
            )
        return completion_script(int(req.json["max_tokens"]), token_gap_s, prefill_s)

    return FakeServer(handler)
