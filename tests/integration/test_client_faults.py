"""The HTTP client under stream faults: streams left open after the terminator, oversized lines and events, odd
and broken chunked framing, idle connections the server closed, keep-alive reuse, and the readiness check."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmeter.adapters import (
    GenRequest,
    HttpClient,
    OpenAIAdapter,
    RequestRecord,
    ServerUnreachableError,
    check_ready,
    stream_request,
    wait_until_ready,
)
from fastmeter.adapters.prometheus import PrometheusScraper
from fastmeter.adapters.sse import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_LINE_BYTES
from fastmeter.load import LoadSpec, make_client, run_load
from fastmeter.load.workloads import random_workload
from fastmeter.validity import BUNCHED_MIN_CHUNKS, BUNCHED_WINDOW_NS
from tests.emulators.fake_server import FakeServer, Raw, Request, Script, Send, Sleep, sse
from tests.emulators.openai_server import openai_server

PROMPT = GenRequest("one two three", 4)


def chunk(text: str) -> bytes:
    return sse({"choices": [{"index": 0, "text": text, "finish_reason": None}]})


OK = [Send(chunk("a")), Send(sse({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}))]
DONE = Send(sse("[DONE]"))


def stream_all(srv: FakeServer, n: int, timeout_s: float, concurrency: int = 1) -> list[RequestRecord]:
    async def go() -> list[RequestRecord]:
        async with make_client(srv.url, concurrency) as client:
            recs = []
            for i in range(n):
                rec = RequestRecord(f"r-{i}")
                recs.append(await stream_request(client, OpenAIAdapter("m"), PROMPT, rec, timeout_s))
            return recs

    return asyncio.run(go())


def test_stream_left_open_after_done_is_finished_at_done_and_frees_its_slot() -> None:
    # The server never ends the chunked body: the record must stay ok, end at [DONE], and the next request
    # must go out at once on another connection instead of waiting for a timeout.
    with FakeServer(lambda _r: Script([*OK, DONE], hold_open=True)) as srv:
        recs = stream_all(srv, 3, timeout_s=30.0)
    assert [r.status for r in recs] == ["ok"] * 3, [r.error for r in recs]
    for r in recs:
        assert r.end_ns is not None and r.end_ns >= r.chunk_t_ns[-1]
    # Each held-open connection was left to drain (then closed) and the next request took a new one.
    assert srv.connections == 3


def test_keep_alive_reuses_the_connection_also_when_the_body_ends_after_done() -> None:
    with FakeServer(lambda _r: Script([*OK, DONE, Sleep(0.02)])) as srv:  # the body's end comes 20 ms later

        async def go() -> list[RequestRecord]:
            recs = []
            async with make_client(srv.url, 1) as client:
                for i in range(3):
                    recs.append(await stream_request(client, OpenAIAdapter("m"), PROMPT, RequestRecord(f"r{i}")))
                    await asyncio.sleep(0.3)  # time for the drain to finish
            return recs

        recs = asyncio.run(go())
    assert all(r.ok for r in recs), [r.error for r in recs]
    assert srv.connections == 1


def test_idle_connection_closed_by_the_server_is_replaced() -> None:
    with FakeServer(lambda _r: Script([*OK, DONE], close=True)) as srv:
        recs = stream_all(srv, 5, timeout_s=10.0)
    assert all(r.ok for r in recs), [r.error for r in recs]
    assert srv.connections == 5


def test_oversized_line_ends_the_request_as_stream_error_without_waiting() -> None:
    huge = b"data: " + b"x" * (DEFAULT_MAX_LINE_BYTES + 1)  # no line end, and the server then goes quiet
    with FakeServer(lambda _r: Script([Send(chunk("a")), Send(huge), Sleep(60)])) as srv:
        (rec,) = stream_all(srv, 1, timeout_s=50.0)
    assert rec.status == "stream_error" and f"exceeds {DEFAULT_MAX_LINE_BYTES} bytes" in rec.error
    assert rec.chunk_tokens == [1] and rec.text == "a"  # what arrived before is kept


def test_oversized_event_of_small_lines_is_a_stream_error() -> None:
    line = b"data: " + b"y" * 65536 + b"\n"
    n_lines = DEFAULT_MAX_EVENT_BYTES // len(line) + 2
    with FakeServer(lambda _r: Script([Send(line * n_lines), Sleep(60)])) as srv:
        (rec,) = stream_all(srv, 1, timeout_s=50.0)
    assert rec.status == "stream_error" and "event's data exceeds" in rec.error


def test_chunk_extensions_trailers_and_split_size_lines() -> None:
    ev = chunk("a")
    raw = [
        Raw(b"%x;ext=1\r\n%s\r\n" % (len(ev), ev)),
        Raw(b"%x" % len(ev)),  # a size line split across writes
        Sleep(0.01),
        Raw(b"\r\n" + ev[:5]),
        Sleep(0.01),
        Raw(ev[5:] + b"\r\n"),
    ]
    done = sse("[DONE]")
    steps = [*raw, Raw(b"%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(done), done))]
    with FakeServer(lambda _r: Script(steps, final_chunk=False)) as srv:
        recs = stream_all(srv, 2, timeout_s=10.0)
    assert all(r.ok and r.text == "aa" for r in recs), [r.error for r in recs]
    assert recs[1].reads >= 3  # the split chunk reached the client in several reads
    assert srv.connections == 1  # the trailer ended the body, so the connection was reused


def test_broken_chunk_framing_is_a_connection_error() -> None:
    with FakeServer(lambda _r: Script([Raw(b"zz\r\ndata: x\r\n")], hold_open=True)) as srv:
        (rec,) = stream_all(srv, 1, timeout_s=10.0)
    assert rec.status == "connection_error" and "bad chunk size" in rec.error


def test_content_length_body_streams_too() -> None:
    with FakeServer(lambda _r: Script([*OK, DONE], chunked=False)) as srv:
        (rec,) = stream_all(srv, 1, timeout_s=10.0)
    assert rec.ok and rec.text == "a" and rec.completion_tokens == 1


def test_bunched_and_reads_per_request() -> None:
    n = BUNCHED_MIN_CHUNKS + 1
    together = Script([Send(b"".join(chunk(f"t{i}") for i in range(n))), DONE])
    gap_s = 5 * BUNCHED_WINDOW_NS / 1e9  # each gap alone exceeds the window
    paced = Script([step for i in range(n) for step in (Sleep(gap_s), Send(chunk(f"t{i}")))] + [DONE])
    scripts = {"r-0": together, "r-1": paced}
    with FakeServer(lambda r: scripts[r.headers["x-request-id"]]) as srv:
        bunched, streamed = stream_all(srv, 2, timeout_s=10.0)
    assert bunched.ok and streamed.ok
    assert bunched.bunched and len(set(bunched.chunk_t_ns)) == 1 and bunched.reads <= 2
    assert not streamed.bunched and streamed.reads >= 2
    assert streamed.chunk_t_ns[-1] - streamed.chunk_t_ns[0] > BUNCHED_WINDOW_NS


def test_send_lag_is_reported_from_the_records() -> None:
    spec = LoadSpec(concurrency=2, rate=200.0, num_requests=20, seed=3)
    with FakeServer(lambda _r: Script([Sleep(0.005), *OK, DONE])) as srv:

        async def go():  # type: ignore[no-untyped-def]
            async with make_client(srv.url, 2) as client:
                return await run_load(client, OpenAIAdapter("m"), random_workload(4, 3, 1), spec)

        result = asyncio.run(go())
    lags = sorted(r.send_ns - r.scheduled_ns for r in result.measured)
    stats = result.send_lag_ns()
    assert min(lags) >= 0
    assert stats["max"] == lags[-1] and stats["p50"] in lags and stats["p99"] in lags
    assert stats["p50"] <= stats["p99"] <= stats["max"]


def answering(statuses: dict[str, list[int]]) -> FakeServer:
    """/v1/models and /health answer the listed statuses in turn (the last one repeats); 404 when unlisted."""

    def handler(req: Request) -> Script:
        seq = statuses.get(req.path, [404])
        status = seq.pop(0) if len(seq) > 1 else seq[0]
        return Script([Send(b"{}")], status=status, content_type="application/json", chunked=False)

    return FakeServer(handler)


def test_readiness_waits_for_a_loading_server() -> None:
    with answering({"/v1/models": [503, 503, 200], "/health": [503]}) as srv:
        assert wait_until_ready(srv.url, timeout_s=10.0) == "/v1/models"
    with answering({"/health": [200]}) as srv:  # TGI has no /v1/models
        assert wait_until_ready(srv.url, timeout_s=10.0) == "/health"


def test_readiness_fails_with_one_clear_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(ServerUnreachableError, match=r"cannot reach .* start the server or fix base_url"):
            wait_until_ready(url, timeout_s=0.3)
    with answering({}) as srv, pytest.raises(ServerUnreachableError, match="neither /v1/models nor /health"):
        asyncio.run(check_ready(srv.url, timeout_s=30.0))
    with answering({"/v1/models": [503], "/health": [503]}) as srv:
        with pytest.raises(ServerUnreachableError, match="answered HTTP 503"):
            wait_until_ready(srv.url, timeout_s=0.3)
    with pytest.raises(ServerUnreachableError, match="base_url must be http"):
        wait_until_ready("ftp://example", timeout_s=0.3)


def test_every_scrape_is_bounded_by_its_timeout() -> None:
    with FakeServer(lambda _r: Script([Sleep(60), Send(b"vllm:x 1\n")])) as srv:

        async def go() -> PrometheusScraper:
            async with HttpClient(srv.url, 1) as client:
                scraper = PrometheusScraper(client, interval_s=0.05, timeout_s=0.1)
                async with scraper:
                    await asyncio.sleep(0.3)
                return scraper

        scraper = asyncio.run(go())
    assert scraper.scrapes == 0 and scraper.errors >= 2  # the loop's scrapes and the final one all gave up
    assert "did not answer within 0.1 s" in scraper.last_error


_EVENTS = [
    chunk("a"),
    b": ping\r\n\r\n",
    sse({"choices": [{"text": "b"}]}, space=False).replace(b"\n", b"\r\n"),
    chunk("c"),
    sse("[DONE]"),
]
_BODY = b"".join(b"%x;x=y\r\n%s\r\n" % (len(e), e) for e in _EVENTS) + b"0\r\nT: 1\r\n\r\n"


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, len(_BODY) - 1), max_size=8, unique=True))
def test_chunked_body_cut_anywhere_gives_the_same_record(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(_BODY)]
    steps: list = []
    for a, b in zip(bounds, bounds[1:]):
        steps += [Raw(_BODY[a:b]), Sleep(0.001)]  # a pause so that the pieces tend to arrive in separate reads
    with FakeServer(lambda _r: Script(steps, final_chunk=False)) as srv:
        recs = stream_all(srv, 2, timeout_s=10.0)
    for rec in recs:
        assert rec.ok, rec.error
        assert rec.text == "abc" and rec.chunk_tokens == [1, 1, 1] and rec.tokens_counted


def test_the_scripted_openai_server_passes_the_readiness_check() -> None:
    with openai_server() as srv:
        assert wait_until_ready(srv.url, timeout_s=5.0) == "/v1/models"
        (rec,) = stream_all(srv, 1, timeout_s=10.0)
    assert rec.ok and rec.completion_tokens == PROMPT.max_tokens


def test_https_with_a_trusted_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    done = sse("[DONE]")
    script = Script([*OK, Raw(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))], final_chunk=False)  # one write
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts the system store, here just this cert
    with FakeServer(lambda _r: script, ssl_context=server_ctx) as srv:
        assert srv.url.startswith("https://")
        recs = stream_all(srv, 2, timeout_s=10.0)
    assert all(r.ok and r.text == "a" for r in recs), [r.error for r in recs]
    assert srv.connections == 1  # the body's end came with [DONE], so the connection was reused
    monkeypatch.delenv("SSL_CERT_FILE")  # an untrusted certificate is a connection error, never a silent pass
    with FakeServer(lambda _r: script, ssl_context=server_ctx) as srv:
        (rec,) = stream_all(srv, 1, timeout_s=10.0)
    assert rec.status == "connection_error" and "CERTIFICATE_VERIFY_FAILED" in rec.error
