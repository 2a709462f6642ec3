"""The native transport: ``fastmeter._core.StreamClient``, one C++ epoll thread that sends the requests and records
each SSE event with the CLOCK_MONOTONIC time of the ``recv()`` that completed it, never taking the GIL.

Python's part is before and after: it builds the request bytes (the same bytes the asyncio client sends) and, when
a request is answered, interprets its recorded events in bulk through the adapter's ``StreamHandler`` into the same
``RequestRecord`` ``stream_request`` fills. Failures keep the same status vocabulary. Plain ``http://`` only: the
native thread has no TLS, so ``client = "native"`` with an ``https://`` URL is a configuration error, and
``client = "auto"`` picks the asyncio client for it (never a silent switch: the run records which one ran).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from fastmeter import _core
from fastmeter.adapters.base import (
    ERROR_BODY_CHARS,
    STATUS_CONNECTION_ERROR,
    STATUS_HTTP_ERROR,
    STATUS_STREAM_ERROR,
    STATUS_TIMEOUT,
    Adapter,
    RequestRecord,
    StreamError,
    apply_event,
    fail_record,
    is_bunched,
)
from fastmeter.adapters.http import request_bytes
from fastmeter.errors import ConfigError

if TYPE_CHECKING:
    from typing_extensions import Self

CLIENT_KINDS = ("asyncio", "native", "auto")
AS_SOON_AS_FREE = -1  # a job's scheduled_ns: send when a connection is free (closed loop)
NO_DEADLINE = 2**63 - 1
# error_kind of a native result (csrc/fastmeter/http/response_parser.h ErrorKind)
_KIND_STATUS = {1: STATUS_CONNECTION_ERROR, 2: STATUS_STREAM_ERROR, 3: STATUS_TIMEOUT}


def resolve_client(kind: str, base_url: str) -> str:
    """The transport a run uses: "native" or "asyncio". "auto" is native for http:// and asyncio for https://."""
    if kind not in CLIENT_KINDS:
        raise ConfigError(f"client must be one of {', '.join(CLIENT_KINDS)}, got {kind!r}")
    scheme = urlsplit(base_url).scheme
    if kind == "auto":
        return "native" if scheme == "http" else "asyncio"
    if kind == "native" and scheme != "http":
        raise ConfigError(
            f'client = "native" speaks plain http:// only, but base_url is {base_url!r}: use client = "asyncio" '
            'for TLS (or "auto", which picks asyncio for https://)'
        )
    return kind


class NativeResult(NamedTuple):
    """One answered request, as the native thread recorded it (field order of ``_core.StreamClient.take``)."""

    id: int
    sent: bool  # False: never sent (the run ended before a connection was free for it)
    scheduled_ns: int
    send_ns: int
    end_ns: int
    http_status: int
    content_encoding: str
    error_kind: int
    error: str
    events: list[tuple[bytes, int]]
    error_body: bytes
    done_seen: bool
    complete: bool
    truncated: bool
    reads: int


class NativeClient:
    """``with NativeClient("http://127.0.0.1:8000", max_connections=64) as c``: at most ``max_connections``
    requests unanswered at once (the concurrency cap). ``realtime``: the thread asks for SCHED_FIFO (lowest
    real-time priority, as the sampler does) so that runnable neighbours cannot delay its receive stamps; without
    the privilege it stays SCHED_OTHER (``sched_policy``). Requests go in with ``submit``; ``take`` returns
    answered ones; ``notify_fd`` is readable while some wait (for ``loop.add_reader``)."""

    def __init__(self, base_url: str, max_connections: int, realtime: bool = True) -> None:
        resolve_client("native", base_url)
        parts = urlsplit(base_url)
        assert parts.hostname is not None  # the config's URL check requires a host
        self.base_url = base_url
        self._prefix = parts.path.rstrip("/")
        self._fixed_head = f"Host: {parts.netloc.rsplit('@', 1)[-1]}\r\nAccept-Encoding: identity\r\n"
        self._core = _core.StreamClient(parts.hostname, parts.port or 80, max_connections, realtime=realtime)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        return request_bytes(method, self._prefix + path, self._fixed_head, body, headers)

    def submit(self, jobs: list[tuple[int, int, bytes, int, int]]) -> None:
        """Jobs as (id, scheduled_ns or AS_SOON_AS_FREE, request bytes, timeout_ns or 0, not_after_ns)."""
        self._core.submit(jobs)

    def take(self) -> list[NativeResult]:
        return [NativeResult(*r) for r in self._core.take()]

    @property
    def notify_fd(self) -> int:
        return self._core.notify_fd

    @property
    def connections_opened(self) -> int:
        return self._core.connections_opened

    @property
    def thread_cpu_ns(self) -> int:
        """CPU time the native thread has used so far, ns (-1 once it has ended)."""
        return self._core.thread_cpu_ns

    @property
    def sched_policy(self) -> str:
        """The native thread's scheduling: "SCHED_FIFO" when ``realtime`` was granted, else "SCHED_OTHER"."""
        return self._core.sched_policy

    @property
    def thread_tid(self) -> int:
        """The native thread's kernel thread id (0 until it has started)."""
        return self._core.thread_tid

    def close(self) -> None:
        """Stop the thread at once; requests still in flight come back from ``take`` as connection errors."""
        self._core.close()


def interpret(adapter: Adapter, record: RequestRecord, res: NativeResult) -> RequestRecord:
    """Fill ``record`` from one native result as ``stream_request`` would from the same bytes; returns it."""
    handler = adapter.open_stream(record)
    record.send_ns = res.send_ns
    if record.scheduled_ns is None:  # closed loop: the instant a connection was free for it
        record.scheduled_ns = res.scheduled_ns
    record.http_status = res.http_status or None
    record.reads = res.reads
    failure = _KIND_STATUS.get(res.error_kind)
    try:
        if res.http_status >= 400 and failure is None:
            text = res.error_body[:ERROR_BODY_CHARS].decode("utf-8", "replace")
            record.end_ns = res.end_ns
            fail_record(record, STATUS_HTTP_ERROR, f"HTTP {res.http_status}: {text}")
        elif res.http_status and res.content_encoding not in ("", "identity"):
            raise StreamError(
                f"the server compressed the stream (Content-Encoding: {res.content_encoding}) though asked not to"
            )
        elif res.http_status < 400:
            _apply_events(handler.event, record, res)
    except StreamError as exc:
        record.end_ns = record.end_ns or res.end_ns
        fail_record(record, STATUS_STREAM_ERROR, str(exc))
    if failure is not None and record.ok and record.end_ns is None:  # the terminator did not come first
        record.end_ns = res.end_ns
        fail_record(record, failure, res.error)
    try:
        handler.finish()
    except StreamError as exc:
        fail_record(record, STATUS_STREAM_ERROR, str(exc))
    record.bunched = is_bunched(record)
    return record


def _apply_events(event: Callable[[Any, int], bool], record: RequestRecord, res: NativeResult) -> None:
    for data, t_ns in res.events:
        if apply_event(event, data, t_ns):
            record.end_ns = t_ns
            return
    if res.error_kind == 0:
        record.end_ns = res.end_ns
        if res.truncated:
            raise StreamError("stream ended in the middle of an event")
