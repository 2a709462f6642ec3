"""What every server adapter records per request, and the one streaming loop they share.

An adapter only knows its server's wire format: which path and JSON body to send, and what each SSE event means
(``StreamHandler``). Transport, timing and failure handling live here once, so every server gets the same clock
(CLOCK_MONOTONIC ns via ``time.monotonic_ns``) and the same status vocabulary. A failed request is recorded with
its status and error text, never raised to the caller and never dropped.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastmeter.adapters.http import HttpClient, TransportError
from fastmeter.adapters.sse import SSEOverflowError, SSEParser
from fastmeter.timeouts import within
from fastmeter.validity import BUNCHED_MIN_CHUNKS, BUNCHED_WINDOW_NS

STATUS_OK = "ok"
STATUS_HTTP_ERROR = "http_error"
STATUS_TIMEOUT = "timeout"
STATUS_CONNECTION_ERROR = "connection_error"
STATUS_STREAM_ERROR = "stream_error"
STATUSES = (STATUS_OK, STATUS_HTTP_ERROR, STATUS_TIMEOUT, STATUS_CONNECTION_ERROR, STATUS_STREAM_ERROR)

ERROR_BODY_CHARS = 500  # an error response's body is quoted up to this in the record


@dataclass(frozen=True, slots=True)
class GenRequest:
    """One generation to send: the final prompt text and the output-token budget."""

    prompt: str
    max_tokens: int


@dataclass(slots=True)
class RequestRecord:
    """Everything measured about one request; all times are CLOCK_MONOTONIC ns.

    ``chunk_t_ns[i]`` is when the bytes carrying streamed chunk ``i`` arrived and ``chunk_tokens[i]`` how many
    tokens it carried (TGI: exactly one per event; OpenAI servers: 1 for a chunk with text, 0 for an empty one,
    since the wire format does not say). ``tokens_counted`` is True when prompt or completion tokens were not
    reported by the server: completion tokens are then the sum of ``chunk_tokens`` and prompt tokens the prompt's
    whitespace-separated word count.
    """

    request_id: str
    prompt: str = ""
    max_tokens: int = 0
    scheduled_ns: int | None = None  # when the arrival process released it (it may then wait for a slot)
    send_ns: int | None = None
    first_token_ns: int | None = None
    end_ns: int | None = None
    chunk_t_ns: list[int] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_counted: bool = False
    status: str = STATUS_OK
    http_status: int | None = None
    error: str = ""
    finish_reason: str | None = None
    text: str = ""
    warmup: bool = False
    reads: int = 0  # socket reads that carried this response's body
    bunched: bool = False  # see is_bunched

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def ttft_ns(self) -> int | None:
        if self.send_ns is None or self.first_token_ns is None:
            return None
        return self.first_token_ns - self.send_ns


class StreamError(Exception):
    """The server's stream said something went wrong, or broke the format; becomes status ``stream_error``."""


class StreamHandler(Protocol):
    """Interprets one request's SSE events. Created per request by ``Adapter.open_stream``."""

    def event(self, data: bytes, t_ns: int) -> bool:
        """Apply one event's data that arrived at ``t_ns``; return True when it ends the stream."""
        ...

    def finish(self) -> None:
        """Fill the record's text and token counts (also after a failure, from what arrived). Raise StreamError
        if the record is still ``ok`` but the stream ended without the server's terminator."""
        ...


class Adapter(Protocol):
    """A server's wire format. ``name`` is the config value that selects it."""

    name: str

    def build(self, request: GenRequest, request_id: str) -> tuple[str, dict[str, Any]]:
        """Return (path, JSON body) for a streaming generation request."""
        ...

    def open_stream(self, record: RequestRecord) -> StreamHandler: ...


async def stream_request(
    client: HttpClient,
    adapter: Adapter,
    request: GenRequest,
    record: RequestRecord,
    timeout_s: float | None = None,
) -> RequestRecord:
    """Send one streaming request and fill ``record`` in place; returns it. Never raises for server failures."""
    record.prompt = request.prompt
    record.max_tokens = request.max_tokens
    handler = adapter.open_stream(record)
    path, payload, headers = request_parts(adapter, request, record.request_id)
    sink = _StreamSink(record, handler)
    record.send_ns = time.monotonic_ns()
    try:
        if timeout_s is None:
            await client.request("POST", path, sink, payload, headers)
        else:
            await within(client.request("POST", path, sink, payload, headers), timeout_s)
        sink.end()
    except asyncio.TimeoutError:
        fail_record(record, STATUS_TIMEOUT, f"no complete response within {timeout_s} s")
    except (StreamError, SSEOverflowError) as exc:
        fail_record(record, STATUS_STREAM_ERROR, str(exc))
    except TransportError as exc:  # refused, reset, peer closed mid-body, broken HTTP framing
        fail_record(record, STATUS_CONNECTION_ERROR, str(exc))
    record.reads = sink.reads
    try:
        handler.finish()
    except StreamError as exc:
        fail_record(record, STATUS_STREAM_ERROR, str(exc))
    record.bunched = is_bunched(record)
    return record


def request_parts(adapter: Adapter, request: GenRequest, request_id: str) -> tuple[str, bytes, dict[str, str]]:
    """(path, JSON body bytes, headers) of one streaming request: what both transports send."""
    path, body = adapter.build(request, request_id)
    headers = {"X-Request-Id": request_id, "Accept": "text/event-stream", "Content-Type": "application/json"}
    return path, json.dumps(body).encode(), headers


class _StreamSink:
    """Runs inside the transport's data_received: SSE framing and the handler's terminator check, nothing else."""

    __slots__ = ("_error_body", "_handler", "_last_t", "_parser", "_rec", "done", "reads")

    def __init__(self, record: RequestRecord, handler: StreamHandler) -> None:
        self._rec = record
        self._handler = handler
        self._parser = SSEParser()
        self._error_body: bytearray | None = None
        self._last_t = 0
        self.done = False
        self.reads = 0

    def head(self, status: int, headers: dict[str, str]) -> None:
        self._rec.http_status = status
        if status >= 400:
            self._error_body = bytearray()
            return
        encoding = headers.get("content-encoding", "identity").lower()
        if encoding not in ("", "identity"):
            raise StreamError(f"the server compressed the stream (Content-Encoding: {encoding}) though asked not to")

    def data(self, data: bytes, t_ns: int) -> bool:
        if t_ns != self._last_t:  # several HTTP chunks of one read share its stamp: count the read once
            self._last_t = t_ns
            self.reads += 1
        if self._error_body is not None:
            self._error_body += data
            return len(self._error_body) >= ERROR_BODY_CHARS
        event = self._handler.event
        for ev in self._parser.feed(data):
            if apply_event(event, ev.data, t_ns):
                self._rec.end_ns = t_ns
                self.done = True
                return True
        return False

    def end(self) -> None:
        """The response ended (body complete or the handler saw its terminator)."""
        rec = self._rec
        if self._error_body is not None:
            text = bytes(self._error_body[:ERROR_BODY_CHARS]).decode("utf-8", "replace")
            fail_record(rec, STATUS_HTTP_ERROR, f"HTTP {rec.http_status}: {text}")
            return
        if self.done:
            return
        rec.end_ns = time.monotonic_ns()
        for ev in self._parser.close():
            if apply_event(self._handler.event, ev.data, rec.end_ns):
                return
        if self._parser.truncated:
            raise StreamError("stream ended in the middle of an event")


def is_bunched(record: RequestRecord) -> bool:
    """All content chunks (those carrying tokens) arrived within BUNCHED_WINDOW_NS, and there were at least
    BUNCHED_MIN_CHUNKS of them: the stream was delivered together, so its inter-token gaps are not the server's."""
    times = [t for t, k in zip(record.chunk_t_ns, record.chunk_tokens) if k > 0]
    return len(times) >= BUNCHED_MIN_CHUNKS and times[-1] - times[0] <= BUNCHED_WINDOW_NS


class JsonEventStream:
    """What the JSON-over-SSE handlers share: the record, the text pieces, whether the server's terminator came,
    event parsing, and the token-count fallback at the end. Subclasses implement ``event``."""

    __slots__ = ("_done", "_pieces", "_rec")
    # finish() says this when the stream ended without the server's terminator.
    missing_terminator = "stream ended without the server's final event"

    def __init__(self, record: RequestRecord) -> None:
        self._rec = record
        self._pieces: list[str] = []
        self._done = False

    @staticmethod
    def parse(data: bytes) -> dict[str, Any]:
        try:
            obj = json.loads(data)
        except ValueError as exc:
            raise StreamError(f"event is not JSON: {data[:200]!r}") from exc
        if not isinstance(obj, dict):
            raise StreamError(f"event is not a JSON object: {data[:200]!r}")
        return obj

    def finish(self) -> None:
        rec = self._rec
        rec.text = "".join(self._pieces)
        if rec.completion_tokens is None:
            rec.completion_tokens = sum(rec.chunk_tokens)
            rec.tokens_counted = True
        if rec.prompt_tokens is None:
            rec.prompt_tokens = count_words(rec.prompt)
            rec.tokens_counted = True
        if rec.status == STATUS_OK and not self._done:
            raise StreamError(self.missing_terminator)


def apply_event(event: Callable[[Any, int], bool], data: Any, t_ns: int) -> bool:
    """Run one event's interpretation; valid JSON of an unexpected shape becomes a StreamError."""
    try:
        return event(data, t_ns)
    except (TypeError, AttributeError, KeyError, IndexError) as exc:  # valid JSON of an unexpected shape
        shown = repr(data[:200]) if isinstance(data, bytes) else repr(data)[:200]  # raw bytes or decoded JSON
        raise StreamError(f"unexpected event shape ({type(exc).__name__}: {exc}): {shown}") from None


def fail_record(record: RequestRecord, status: str, error: str) -> None:
    record.status = status
    record.error = error
    if record.end_ns is None:
        record.end_ns = time.monotonic_ns()


def count_words(text: str) -> int:
    """The token estimate used when a server reports no usage: whitespace-separated words."""
    return len(text.split())
