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
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from fastmeter.adapters.sse import SSEParser

STATUS_OK = "ok"
STATUS_HTTP_ERROR = "http_error"
STATUS_TIMEOUT = "timeout"
STATUS_CONNECTION_ERROR = "connection_error"
STATUS_STREAM_ERROR = "stream_error"
STATUSES = (STATUS_OK, STATUS_HTTP_ERROR, STATUS_TIMEOUT, STATUS_CONNECTION_ERROR, STATUS_STREAM_ERROR)

_ERROR_BODY_CHARS = 500


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
    client: httpx.AsyncClient,
    adapter: Adapter,
    request: GenRequest,
    record: RequestRecord,
    timeout_s: float | None = None,
) -> RequestRecord:
    """Send one streaming request and fill ``record`` in place; returns it. Never raises for server failures."""
    record.prompt = request.prompt
    record.max_tokens = request.max_tokens
    handler = adapter.open_stream(record)
    try:
        if timeout_s is None:
            await _exchange(client, adapter, request, record, handler)
        else:
            await asyncio.wait_for(_exchange(client, adapter, request, record, handler), timeout_s)
    except asyncio.TimeoutError:
        _fail(record, STATUS_TIMEOUT, f"no complete response within {timeout_s} s")
    except StreamError as exc:
        _fail(record, STATUS_STREAM_ERROR, str(exc))
    except httpx.DecodingError as exc:  # a body that its Content-Encoding cannot decode
        _fail(record, STATUS_STREAM_ERROR, _describe(exc))
    except httpx.HTTPError as exc:  # refused, reset, peer closed mid-body, protocol breakage
        _fail(record, STATUS_CONNECTION_ERROR, _describe(exc))
    try:
        handler.finish()
    except StreamError as exc:
        _fail(record, STATUS_STREAM_ERROR, str(exc))
    return record


async def _exchange(
    client: httpx.AsyncClient,
    adapter: Adapter,
    request: GenRequest,
    record: RequestRecord,
    handler: StreamHandler,
) -> None:
    path, body = adapter.build(request, record.request_id)
    headers = {"X-Request-Id": record.request_id, "Accept": "text/event-stream"}
    parser = SSEParser()
    clock = time.monotonic_ns
    record.send_ns = clock()
    async with client.stream("POST", path, json=body, headers=headers) as response:
        record.http_status = response.status_code
        if response.status_code >= 400:
            text = (await response.aread()).decode("utf-8", "replace")[:_ERROR_BODY_CHARS]
            record.end_ns = clock()
            record.status = STATUS_HTTP_ERROR
            record.error = f"HTTP {response.status_code}: {text}"
            return
        done = False
        async for chunk in response.aiter_bytes():
            if done:  # read to the end so the connection can be reused
                continue
            t_ns = clock()
            for ev in parser.feed(chunk):
                if _apply(handler, ev.data, t_ns):
                    record.end_ns = t_ns
                    done = True
                    break
        if done:
            return
        record.end_ns = clock()
        for ev in parser.close():
            if _apply(handler, ev.data, record.end_ns):
                return
    if parser.truncated:
        raise StreamError("stream ended in the middle of an event")


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


def _apply(handler: StreamHandler, data: bytes, t_ns: int) -> bool:
    try:
        return handler.event(data, t_ns)
    except (TypeError, AttributeError, KeyError, IndexError) as exc:  # valid JSON of an unexpected shape
        raise StreamError(f"unexpected event shape ({type(exc).__name__}: {exc}): {data[:200]!r}") from None


def _fail(record: RequestRecord, status: str, error: str) -> None:
    record.status = status
    record.error = error
    if record.end_ns is None:
        record.end_ns = time.monotonic_ns()


def _describe(exc: BaseException) -> str:
    """httpx wraps a reset in two empty-message layers: name the root cause too."""
    root = exc
    while root.__cause__ is not None or root.__context__ is not None:
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    text = f"{type(exc).__name__}: {exc}"
    return text if str(root) == str(exc) else f"{text} ({type(root).__name__}: {root})"


def count_words(text: str) -> int:
    """The token estimate used when a server reports no usage: whitespace-separated words."""
    return len(text.split())
