"""The native transport against the scripted server: for every wire format and fault, the same record as the
asyncio client makes of the same bytes (status, tokens, text, chunks), plus what only the native thread does."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from pathlib import Path

import pytest

from fastmeter.adapters import GenRequest, OpenAIAdapter, RequestRecord, TGIAdapter, stream_request
from fastmeter.adapters.base import Adapter
from fastmeter.adapters.native import NativeClient, resolve_client
from fastmeter.errors import ConfigError
from fastmeter.load import LoadSpec, make_client, validate_config
from fastmeter.load.native_runner import run_load_native
from tests.emulators.fake_server import Cut, FakeServer, Raw, Request, Reset, Script, Send, Sleep, sse
from tests.emulators.stamp_server import StampServer, build_stamp_server, send_stamps_ns

PROMPT = GenRequest("one two three", 4)
USAGE = sse({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}})
DONE = Send(sse("[DONE]"))


def text(t: str, finish: str | None = None) -> bytes:
    return sse({"choices": [{"index": 0, "text": t, "finish_reason": finish}]})


def tgi(t: str, last: bool = False) -> bytes:
    ev: dict[str, object] = {"token": {"id": 1, "text": t, "special": False}}
    if last:
        ev |= {"generated_text": "ab", "details": {"finish_reason": "length", "generated_tokens": 2, "input_length": 3}}
    return sse(ev, space=False)


# name -> (script, adapter)
CASES: dict[str, tuple[Script, Adapter]] = {
    "ok": (Script([Send(text("a")), Send(text("b", "length")), Send(USAGE), DONE]), OpenAIAdapter("m")),
    "comments_crlf_split": (
        Script([Send(b": ping\r\n\r\n"), Send(b"data: " + text("a")[6:-2]), Sleep(0.01), Send(b"\r\n\r\n"), DONE]),
        OpenAIAdapter("m"),
    ),
    "no_usage": (Script([Send(text("a")), Send(text("")), DONE]), OpenAIAdapter("m")),
    "error_event": (Script([Send(text("a")), Send(sse({"error": {"message": "boom"}})), DONE]), OpenAIAdapter("m")),
    "no_done": (Script([Send(text("a")), Send(USAGE)]), OpenAIAdapter("m")),
    "truncated_event": (Script([Send(text("a")), Send(b"data: {")]), OpenAIAdapter("m")),
    "bad_json": (Script([Send(text("a")), Send(sse("{not json")), DONE]), OpenAIAdapter("m")),
    "http_500": (Script([Send(b"model overloaded")], status=500, content_type="text/plain"), OpenAIAdapter("m")),
    "reset": (Script([Send(text("a")), Sleep(0.01), Reset()]), OpenAIAdapter("m")),
    "cut": (Script([Send(text("a")), Sleep(0.01), Cut()]), OpenAIAdapter("m")),
    "broken_chunk": (Script([Raw(b"zz\r\ndata: x\r\n")], hold_open=True), OpenAIAdapter("m")),
    "content_length": (Script([Send(text("a")), DONE], chunked=False), OpenAIAdapter("m")),
    "open_after_done": (Script([Send(text("a")), DONE], hold_open=True), OpenAIAdapter("m")),
    "tgi": (Script([Send(b":\n\n"), Send(tgi("a")), Send(tgi("b", last=True))]), TGIAdapter()),
    "tgi_no_final": (Script([Send(tgi("a"))]), TGIAdapter()),
}


def via_asyncio(url: str, adapter: Adapter, timeout_s: float = 5.0) -> RequestRecord:
    async def go() -> RequestRecord:
        async with make_client(url, 1) as client:
            return await stream_request(client, adapter, PROMPT, RequestRecord("r-0"), timeout_s)

    return asyncio.run(go())


def via_native(
    url: str, adapter: Adapter, n: int = 1, timeout_s: float = 5.0, concurrency: int = 1
) -> list[RequestRecord]:
    async def go() -> list[RequestRecord]:
        with NativeClient(url, concurrency) as client:
            spec = LoadSpec(concurrency=concurrency, num_requests=n, timeout_s=timeout_s)
            return (await run_load_native(client, adapter, [PROMPT], spec)).records

    return asyncio.run(go())


def summary(r: RequestRecord) -> tuple[object, ...]:
    return (
        r.status,
        r.http_status,
        r.text,
        r.chunk_tokens,
        r.prompt_tokens,
        r.completion_tokens,
        r.finish_reason,
        r.tokens_counted,
        bool(r.error),
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_native_record_equals_the_asyncio_record(name: str) -> None:
    script, adapter = CASES[name]
    with FakeServer(lambda _r: script) as srv:
        want = via_asyncio(srv.url, adapter)
        (got,) = via_native(srv.url, adapter)
    assert summary(got) == summary(want), (got.error, want.error)
    assert got.send_ns is not None and got.end_ns is not None and got.send_ns <= got.end_ns
    assert all(got.send_ns < t <= got.end_ns for t in got.chunk_t_ns)
    if got.status == "ok":
        assert got.first_token_ns == got.chunk_t_ns[[k > 0 for k in got.chunk_tokens].index(True)]


def test_slot_frees_at_done_while_the_body_stays_open() -> None:
    with FakeServer(lambda _r: Script([Send(text("a")), DONE], hold_open=True)) as srv:
        recs = via_native(srv.url, OpenAIAdapter("m"), n=3, timeout_s=30.0)
    assert [r.status for r in recs] == ["ok"] * 3
    assert all(r.end_ns - r.send_ns < 1_000_000_000 for r in recs)  # not held until the drain grace ran out
    assert srv.connections >= 2  # a held-open connection is never reused while it drains


def test_keep_alive_and_a_connection_closed_while_idle() -> None:
    with FakeServer(lambda _r: Script([Send(text("a")), DONE])) as srv:
        recs = via_native(srv.url, OpenAIAdapter("m"), n=5)
    # The slot frees at [DONE], before the body's last chunk (a separate write here) frees the connection: the next
    # request may take a second one, and from then on the two are reused.
    assert all(r.ok for r in recs) and srv.connections <= 2
    with FakeServer(lambda _r: Script([Send(text("a")), DONE], close=True)) as srv:
        recs = via_native(srv.url, OpenAIAdapter("m"), n=5)
    assert all(r.ok for r in recs), [r.error for r in recs]
    assert srv.connections == 5


def test_timeout_and_refused_connection_are_recorded() -> None:
    with FakeServer(lambda _r: Script([Send(text("a")), Sleep(5)])) as srv:
        (rec,) = via_native(srv.url, OpenAIAdapter("m"), timeout_s=0.2)
    assert rec.status == "timeout" and rec.text == "a" and rec.chunk_tokens == [1]
    assert 200_000_000 <= rec.end_ns - rec.send_ns < 5_000_000_000
    with FakeServer(lambda _r: Script([])) as srv:
        url = srv.url
    (rec,) = via_native(url, OpenAIAdapter("m"))  # nothing listens there any more
    assert rec.status == "connection_error" and "cannot connect" in rec.error


def test_concurrency_cap_and_every_request_recorded() -> None:
    def handler(req: Request) -> Script:
        i = int(req.headers["x-request-id"].rsplit("-", 1)[1])
        return Script([Sleep(0.02), Send(text("a")), DONE] if i % 4 else [Send(b"busy")], status=200 if i % 4 else 503)

    with FakeServer(handler) as srv:
        recs = via_native(srv.url, OpenAIAdapter("m"), n=20, concurrency=3)
    assert srv.max_in_flight == 3
    assert [r.request_id for r in recs] == [f"req-{i}" for i in range(20)]
    assert [r.status for r in recs] == [("ok" if i % 4 else "http_error") for i in range(20)]
    assert all(r.scheduled_ns is not None and r.scheduled_ns <= r.send_ns for r in recs)


def test_every_chunk_is_stamped_after_the_server_sent_it(tmp_path: Path) -> None:
    exe = build_stamp_server(tmp_path)
    with StampServer(exe, gap_s=0.001) as srv:
        recs = via_native(srv.url, OpenAIAdapter("m", ignore_eos=True), n=8, concurrency=4)
    for r in recs:
        assert r.ok and r.completion_tokens == 4
        sent = send_stamps_ns(r.text)
        assert len(sent) == len(r.chunk_t_ns) == 4
        assert all(rx > tx for rx, tx in zip(r.chunk_t_ns, sent))


def test_client_choice_auto_native_and_https() -> None:
    assert resolve_client("auto", "http://127.0.0.1:1") == "native"
    assert resolve_client("auto", "https://example.invalid") == "asyncio"
    assert resolve_client("asyncio", "http://127.0.0.1:1") == "asyncio"
    with pytest.raises(ConfigError, match="plain http:// only"):
        resolve_client("native", "https://127.0.0.1:1")
    base = {
        "server": {"kind": "openai", "base_url": "https://127.0.0.1:1", "model": "m"},
        "workload": {"kind": "random", "input_tokens": 2, "output_tokens": 2},
    }
    with pytest.raises(ConfigError, match='client\\b.*"native" speaks plain http:// only'):
        validate_config({**base, "load": {"client": "native"}})
    assert validate_config({**base, "load": {"client": "auto"}}).load.client == "auto"


def test_a_closed_client_answers_every_request() -> None:
    def slow(_r: Request) -> Script:
        return Script([Send(text("a")), Sleep(5)])

    with FakeServer(slow) as srv:
        client = NativeClient(srv.url, 2)
        client.submit([(i, -1, client.request("POST", "/v1/completions", b"{}", {}), 0, 2**63 - 1) for i in range(4)])
        seen: list[int] = []
        deadline = asyncio.run(_wait_for(lambda: srv.in_flight == 2))
        client.close()
        results = client.take()
        seen = sorted(r.id for r in results)
    assert deadline and seen == [0, 1, 2, 3]
    sent = [r for r in results if r.sent]
    assert len(sent) == 2 and all(r.error_kind == 1 and "closed" in r.error for r in results)


# The client closes its connections mid-request when the run ends with the error; now and then the emulator's
# asyncio server is torn down with one of those accepted sockets not yet closed, a warning about the test server's
# teardown, not about fastmeter.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("rate", [float("inf"), 200.0])
def test_an_exception_while_taking_answers_ends_the_run_with_it(rate: float) -> None:
    """An exception in `on_done` (the caller's, here) happens inside the event loop's reader callback, where asyncio
    only logs it: the run must raise it, promptly, and still hand every other answer of the batch to `on_done`."""
    done: list[str] = []

    def on_done(rec: RequestRecord) -> None:
        done.append(rec.request_id)
        if len(done) == 1:
            raise RuntimeError("the caller's bookkeeping failed")

    async def run(url: str) -> None:
        with NativeClient(url, 4) as client:
            spec = LoadSpec(concurrency=4, num_requests=12, rate=rate)
            await asyncio.wait_for(run_load_native(client, OpenAIAdapter("m"), [PROMPT], spec, on_done=on_done), 20)

    with FakeServer(lambda _r: Script([Send(text("a")), DONE])) as srv:
        with pytest.raises(RuntimeError, match="bookkeeping failed"):
            asyncio.run(run(srv.url))
    gc.collect()  # such a socket is reported now, under this test's filter, not in a later test
    # Each request reached on_done at most once; the failing one is the first.
    assert len(done) == len(set(done)) and done[0].startswith("req-")


async def _wait_for(cond: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    for _ in range(int(timeout_s / 0.01)):
        if cond():
            return True
        await asyncio.sleep(0.01)
    return False
