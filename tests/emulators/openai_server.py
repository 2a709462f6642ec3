"""A scripted OpenAI-compatible streaming server for bench tests: fixed token timing, a usage chunk, optional
failures — on top of FakeServer."""

from __future__ import annotations

import json
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


def json_reply(obj: object, status: int = 200) -> Script:
    return Script([Send(json.dumps(obj).encode())], status=status, content_type="application/json", chunked=False)


def info_reply(req: Request, version: str | None) -> Script | None:
    """Answers to GETs, which are not completion requests: /v1/models and /health answer 200 (the readiness
    check), GET /version answers as vLLM does when `version` is set (the fingerprint's probe), others 404. None
    for a POST."""
    if req.method != "GET":
        return None
    if req.path in READY_PATHS:
        return json_reply({"object": "list", "data": [{"id": "m"}]})
    if req.path == "/version" and version is not None:
        return json_reply({"version": version})
    return json_reply({"error": "not found"}, status=404)


def openai_server(
    token_gap_s: float = 0.005,
    prefill_s: float = 0.01,
    fail: Callable[[int], bool] = lambda i: False,
    version: str | None = None,
) -> FakeServer:
    """Each request streams `max_tokens` tokens; request number i (in arrival order) fails with HTTP 500 when
    fail(i). GETs do not count as requests (see `info_reply`); with `version`, GET /version answers as vLLM does."""
    counter = {"n": 0}

    def handler(req: Request) -> Script:
        if (info := info_reply(req, version)) is not None:
            return info
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
