"""Adapters against the fake server: timing on CLOCK_MONOTONIC, wire formats, and every failure recorded."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from fastmeter.adapters import GenRequest, OpenAIAdapter, RequestRecord, TGIAdapter, stream_request
from fastmeter.adapters.base import Adapter
from fastmeter.load import make_client
from tests.emulators.fake_server import Cut, FakeServer, Request, Reset, Script, Send, Sleep, sse

MS = 1_000_000
PROMPT = GenRequest("one two three", 4)


def completion(text: str, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}


USAGE = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}


def run_one(
    script: Script | Callable[[Request], Script],
    adapter: Adapter | None = None,
    timeout_s: float | None = 10.0,
) -> tuple[RequestRecord, FakeServer]:
    handler = script if callable(script) else (lambda _req: script)
    with FakeServer(handler) as srv:

        async def go() -> RequestRecord:
            async with make_client(srv.url, 1) as client:
                rec = RequestRecord("r-1")
                return await stream_request(client, adapter or OpenAIAdapter("m"), PROMPT, rec, timeout_s)

        rec = asyncio.run(go())
    return rec, srv


def test_openai_completions_timing_usage_and_request_body() -> None:
    steps: list = [Sleep(0.05), Send(sse(completion("Hello")))]
    for piece, finish in ((" big", None), (" world", "length")):
        steps += [Sleep(0.02), Send(sse(completion(piece, finish)))]
    steps += [Send(sse(USAGE)), Send(sse("[DONE]"))]
    rec, srv = run_one(Script(steps), OpenAIAdapter("tiny", ignore_eos=True))

    assert rec.status == "ok" and rec.error == ""
    assert rec.text == "Hello big world"
    assert rec.chunk_tokens == [1, 1, 1]
    assert rec.prompt_tokens == 5 and rec.completion_tokens == 3 and not rec.tokens_counted
    assert rec.finish_reason == "length"
    assert rec.send_ns is not None and rec.end_ns is not None
    # The server cannot write before it has the request: each chunk's arrival is bounded below by its sleeps.
    assert rec.first_token_ns == rec.chunk_t_ns[0]
    for k, t in enumerate(rec.chunk_t_ns):
        assert t - rec.send_ns >= 50 * MS + k * 20 * MS - MS
    assert rec.chunk_t_ns == sorted(rec.chunk_t_ns)
    assert rec.end_ns >= rec.chunk_t_ns[-1]
    (req,) = srv.requests
    assert req.path == "/v1/completions"
    assert req.headers["x-request-id"] == "r-1"
    assert req.json == {
        "model": "tiny",
        "max_tokens": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
        "prompt": "one two three",
        "ignore_eos": True,
    }


def test_openai_chat_role_chunk_is_not_a_token() -> None:
    def delta(d: dict, finish: str | None = None) -> bytes:
        return sse({"choices": [{"index": 0, "delta": d, "finish_reason": finish}]})

    steps = [
        Send(delta({"role": "assistant", "content": ""})),
        Sleep(0.02),
        Send(delta({"content": "Hi"})),
        Send(delta({"content": "!"}, "stop")),
        Send(delta({})),
        Send(sse("[DONE]")),
    ]
    rec, srv = run_one(Script(steps), OpenAIAdapter("m", endpoint="chat"))
    assert rec.status == "ok"
    assert rec.chunk_tokens == [0, 1, 1, 0]
    assert rec.first_token_ns == rec.chunk_t_ns[1]
    assert rec.first_token_ns - rec.send_ns >= 20 * MS - MS
    assert rec.text == "Hi!" and rec.finish_reason == "stop"
    assert srv.requests[0].path == "/v1/chat/completions"
    assert srv.requests[0].json["messages"] == [{"role": "user", "content": "one two three"}]


def test_comments_keepalives_no_space_crlf_and_split_events() -> None:
    event = sse(completion("ab"), space=False).replace(b"\n", b"\r\n")
    steps = [
        Send(b": ping\n\n"),
        Send(b":\n\n"),
        Send(event[:7]),
        Sleep(0.01),
        Send(event[7:20]),
        Sleep(0.01),
        Send(event[20:]),
        Send(b": keep-alive\n\n"),
        Send(sse(completion("c"))),
        Send(b"data: [DO"),
        Sleep(0.01),
        Send(b"NE]\n"),
        Send(b"\n"),
    ]
    rec, _ = run_one(Script(steps))
    assert rec.status == "ok", rec.error
    assert rec.text == "abc"
    assert rec.chunk_tokens == [1, 1]
    assert rec.chunk_t_ns[0] - rec.send_ns >= 20 * MS - MS  # stamped when its last byte arrived


def test_missing_usage_chunk_counts_tokens_and_marks_it() -> None:
    steps = [
        Send(sse(completion("a"))),
        Send(sse(completion(""))),
        Send(sse(completion("b", "stop"))),
        Send(sse("[DONE]")),
    ]
    rec, _ = run_one(Script(steps))
    assert rec.status == "ok"
    assert rec.tokens_counted
    assert rec.completion_tokens == 2 and rec.chunk_tokens == [1, 0, 1]
    assert rec.prompt_tokens == 3  # words of "one two three"


def test_error_event_mid_stream_keeps_partial_record() -> None:
    steps = [Send(sse(completion("a"))), Send(sse({"error": {"message": "boom", "code": 500}}))]
    rec, _ = run_one(Script(steps))
    assert rec.status == "stream_error"
    assert "boom" in rec.error
    assert rec.text == "a" and rec.chunk_tokens == [1] and rec.end_ns is not None


def test_stream_without_done_is_a_stream_error() -> None:
    rec, _ = run_one(Script([Send(sse(completion("a")))]))
    assert rec.status == "stream_error" and "[DONE]" in rec.error
    assert rec.completion_tokens == 1 and rec.tokens_counted


def test_truncated_event_and_bad_json_are_stream_errors() -> None:
    rec, _ = run_one(Script([Send(b'data: {"choices": [')]))
    assert rec.status == "stream_error" and "middle of an event" in rec.error
    rec, _ = run_one(Script([Send(b"data: {not json\n\n")]))
    assert rec.status == "stream_error" and "not JSON" in rec.error
    rec, _ = run_one(Script([Send(sse({"choices": ["x"]}))]))
    assert rec.status == "stream_error" and "unexpected event shape" in rec.error


def test_http_500_is_recorded_with_body() -> None:
    rec, _ = run_one(Script([Send(b"engine dead")], status=500, content_type="text/plain", chunked=False))
    assert rec.status == "http_error" and rec.http_status == 500
    assert rec.error == "HTTP 500: engine dead"
    assert rec.chunk_t_ns == [] and rec.end_ns is not None


def test_connection_reset_and_cut_mid_stream() -> None:
    for step, why in (
        (Reset(), "ConnectionResetError"),
        (Cut(), "closed the connection in the middle of the response body"),
    ):
        rec, _ = run_one(Script([Send(sse(completion("a"))), Sleep(0.01), step]))
        assert rec.status == "connection_error" and why in rec.error, rec.error
        assert rec.chunk_tokens == [1] and rec.text == "a"


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connect is refused

        async def go() -> RequestRecord:
            async with make_client(f"http://127.0.0.1:{port}", 1) as client:
                return await stream_request(client, OpenAIAdapter("m"), PROMPT, RequestRecord("x"), 5.0)

        rec = asyncio.run(go())
    assert rec.status == "connection_error" and "cannot connect to 127.0.0.1" in rec.error


def test_timeout_is_recorded_after_the_limit() -> None:
    rec, _ = run_one(Script([Send(sse(completion("a"))), Sleep(30)]), timeout_s=0.2)
    assert rec.status == "timeout"
    assert rec.end_ns is not None and rec.send_ns is not None
    assert rec.end_ns - rec.send_ns >= 200 * MS - MS
    assert rec.chunk_tokens == [1]


def tgi_token(i: int, text: str, special: bool = False) -> dict:
    return {
        "token": {"id": i, "text": text, "logprob": -0.1, "special": special},
        "generated_text": None,
        "details": None,
    }


def test_tgi_stream_format() -> None:
    last = tgi_token(3, "</s>", special=True) | {
        "generated_text": "Hi there",
        "details": {"finish_reason": "eos_token", "generated_tokens": 3, "input_length": 7},
    }
    steps = [
        Send(b":\n\n"),
        Sleep(0.03),
        Send(sse(tgi_token(1, "Hi"), space=False)),
        Send(b": ping\n\n"),
        Sleep(0.01),
        Send(sse(tgi_token(2, " there"), space=False)),
        Send(sse(last, space=False)),
    ]
    rec, srv = run_one(Script(steps), TGIAdapter({"temperature": 0.5}))
    assert rec.status == "ok", rec.error
    assert rec.text == "Hi there"
    assert rec.chunk_tokens == [1, 1, 1]
    assert rec.completion_tokens == 3 and rec.prompt_tokens == 7 and not rec.tokens_counted
    assert rec.finish_reason == "eos_token"
    assert rec.first_token_ns - rec.send_ns >= 30 * MS - MS
    assert rec.chunk_t_ns[1] - rec.send_ns >= 40 * MS - MS
    (req,) = srv.requests
    assert req.path == "/generate_stream"
    assert req.json == {
        "inputs": "one two three",
        "parameters": {"max_new_tokens": 4, "details": True, "temperature": 0.5},
    }


def test_tgi_error_event_and_missing_final_event() -> None:
    err = {"error": "Request failed during generation: out of memory", "error_type": "generation"}
    rec, _ = run_one(Script([Send(sse(tgi_token(1, "a"), space=False)), Send(sse(err, space=False))]), TGIAdapter())
    assert rec.status == "stream_error" and "out of memory" in rec.error and rec.chunk_tokens == [1]
    rec, _ = run_one(Script([Send(sse(tgi_token(1, "a"), space=False))]), TGIAdapter())
    assert rec.status == "stream_error" and "generated_text" in rec.error
    assert rec.tokens_counted and rec.completion_tokens == 1 and rec.text == "a"
