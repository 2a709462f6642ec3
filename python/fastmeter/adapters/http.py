"""A lean HTTP/1.1 client for streamed responses, built on asyncio protocols.

Why not httpx or aiohttp: their response bodies reach the caller through a stream reader that wakes a coroutine
per read, so a chunk's timestamp is taken when the event loop gets round to that coroutine, after every other
stream's work queued before it; httpx's pool bookkeeping is also O(n^2) in connections. Here the transport calls
``data_received`` with the bytes, the CLOCK_MONOTONIC stamp is taken first thing there, and the body (chunked
decoding, then the caller's ``BodySink``: SSE framing, terminator check) is processed in the same callback: no
coroutine wakes per chunk, only once per response. What it does not do: HTTP/2, proxies, compressed bodies (it asks
for ``identity``; the adapters reject anything else). TLS works through asyncio (``https://`` base URLs).

Connections are kept alive and reused LIFO from a stack (O(1) per request, closed ones skipped lazily); at most
``max_connections`` idle ones are kept. A sink may end a response early (at the stream's terminator): the caller is
answered at once and the connection drains the rest of the body in the background for ``DRAIN_GRACE_S``, then is
reused, or closed if the server keeps the stream open.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from fastmeter.errors import ConfigError

if TYPE_CHECKING:
    from typing_extensions import Self

# After a sink ends a response early, how long the rest of the body may take before the connection is closed.
DRAIN_GRACE_S = 1.0
_MAX_HEAD_BYTES = 64 * 1024  # status line + headers
_MAX_CHUNK_LINE_BYTES = 4096  # chunk-size line with extensions, or one trailer line
_NO_BODY = (204, 304)
_MAX_GET_BYTES = 64 * 1024 * 1024  # a /metrics page of a large server is a few MB


class TransportError(Exception):
    """Connecting failed, the connection broke, or the response broke HTTP/1.1 framing."""


class _Stale(TransportError):
    """A reused keep-alive connection was closed by the server before any response byte: safe to retry."""


class BodySink(Protocol):
    """Receives one response. ``data`` runs inside ``data_received``: ``t_ns`` is when that read arrived."""

    def head(self, status: int, headers: dict[str, str]) -> None: ...

    def data(self, data: bytes, t_ns: int) -> bool:
        """Take body bytes; return True when nothing more is needed (the caller is answered at once)."""
        ...


class HttpClient:
    """``async with HttpClient("http://127.0.0.1:8000", max_connections=64) as c: await c.request(...)``."""

    def __init__(self, base_url: str, max_connections: int | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"base_url must be http://HOST[:PORT][/prefix] or https://..., got {base_url!r}")
        self.base_url = base_url
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._prefix = parts.path.rstrip("/")
        host_header = parts.netloc.rsplit("@", 1)[-1]
        self._fixed_head = f"Host: {host_header}\r\nAccept-Encoding: identity\r\n"
        self._max_idle = max_connections if max_connections is not None else 1024
        self._idle: list[_Conn] = []
        self._open: set[_Conn] = set()
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._open):
            conn.close()
        self._idle.clear()

    async def request(
        self, method: str, path: str, sink: BodySink, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        """Send one request and feed the response to ``sink``; returns when the body ended or the sink said
        done. Raises TransportError (and whatever the sink raises); cancelling it closes the connection."""
        payload = request_bytes(method, self._prefix + path, self._fixed_head, body, headers)
        conn, reused = await self._acquire()
        try:
            await conn.exchange(payload, sink, reused)
        except _Stale:  # the server timed out the idle connection as we sent: once more on a fresh one
            conn, _ = await self._acquire(fresh=True)
            await conn.exchange(payload, sink, False)

    async def get(self, path: str, max_bytes: int = _MAX_GET_BYTES) -> tuple[int, bytes]:
        """GET a whole (bounded) body: (status, body). A longer body raises TransportError."""
        sink = _Collector(max_bytes)
        await self.request("GET", path, sink)
        return sink.status, bytes(sink.body)

    async def _acquire(self, fresh: bool = False) -> tuple[_Conn, bool]:
        if self._closed:
            raise TransportError("the HTTP client is closed")
        idle = self._idle
        while idle and not fresh:
            conn = idle.pop()
            if conn.usable:
                return conn, True
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: _Conn(self), self._host, self._port, ssl=self._ssl)
        except OSError as exc:
            raise TransportError(f"cannot connect to {self._host}:{self._port} ({type(exc).__name__}: {exc})") from None
        self._open.add(conn)
        return conn, False

    def _release(self, conn: _Conn) -> None:
        if len(self._idle) < self._max_idle and not self._closed:
            self._idle.append(conn)
        else:
            conn.close()

    def _forget(self, conn: _Conn) -> None:
        self._open.discard(conn)


def request_bytes(method: str, target: str, fixed_head: str, body: bytes, headers: dict[str, str] | None) -> bytes:
    """One HTTP/1.1 request, head and body (both transports send exactly these bytes)."""
    lines = [f"{method} {target} HTTP/1.1\r\n", fixed_head]
    if headers:
        lines.extend(f"{k}: {v}\r\n" for k, v in headers.items())
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + body


class _Collector:
    """A BodySink that keeps the whole body, up to a cap."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.status = 0
        self.body = bytearray()

    def head(self, status: int, headers: dict[str, str]) -> None:
        self.status = status

    def data(self, data: bytes, t_ns: int) -> bool:
        self.body += data
        if len(self.body) > self.max_bytes:
            raise TransportError(f"response body larger than {self.max_bytes} bytes")
        return False


# Body framing states of one response.
_HEAD, _SIZE, _DATA, _DATA_END, _TRAILER, _LENGTH, _UNTIL_CLOSE, _IDLE = range(8)


class _Conn(asyncio.Protocol):
    """One keep-alive connection; parses responses as bytes arrive and hands bodies to the current sink."""

    def __init__(self, client: HttpClient) -> None:
        self._client = client
        self._transport: asyncio.Transport | None = None
        self._state = _IDLE
        self._sink: BodySink | None = None  # None while draining after the sink said done
        self._fut: asyncio.Future[None] | None = None
        self._line = b""  # a partial head or chunk-size line
        self._remaining = 0
        self._keep_alive = True
        self._got_bytes = False
        self._drain_timer: asyncio.TimerHandle | None = None
        self._reused = False
        self.usable = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.usable = True

    async def exchange(self, payload: bytes, sink: BodySink, reused: bool) -> None:
        assert self._transport is not None
        self._fut = fut = asyncio.get_running_loop().create_future()
        self._sink, self._state, self._line, self._got_bytes, self._keep_alive = sink, _HEAD, b"", False, True
        self._reused = reused
        self.usable = False
        self._transport.write(payload)
        try:
            await fut
        except asyncio.CancelledError:
            self.close()
            raise

    def close(self) -> None:
        self.usable = False
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        t_ns = time.monotonic_ns()  # first thing: when these bytes reached us
        self._got_bytes = True
        try:
            self._feed(data, t_ns)
        except Exception as exc:  # a sink's verdict or broken framing ends this response, not the event loop
            self._fail(exc)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self._client._forget(self)
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        if self._state == _UNTIL_CLOSE and exc is None:
            self._complete()
            return
        if self._state == _IDLE or self._fut is None or self._fut.done():
            return
        if not self._got_bytes and self._reused:
            self._fail(_Stale("keep-alive connection closed by the server"))
            return
        where = "before the response head" if self._state == _HEAD else "in the middle of the response body"
        if exc is None:
            self._fail(TransportError(f"the server closed the connection {where}"))
        else:
            self._fail(TransportError(f"connection lost {where} ({type(exc).__name__}: {exc})"))

    # --- parsing ---------------------------------------------------------------------------------------------

    def _feed(self, data: bytes, t_ns: int) -> None:
        """Linear in the bytes: every search starts where the last one ended, and only a line split between
        reads (a chunk-size line or the head, both capped) is ever copied to be joined with the next read."""
        if self._line:
            data, self._line = self._line + data, b""
        pos, n = 0, len(data)
        while pos < n:
            state = self._state
            if state == _DATA or state == _LENGTH:
                end = min(n, pos + self._remaining)
                self._remaining -= end - pos
                self._deliver(data if (pos == 0 and end == n) else data[pos:end], t_ns)
                pos = end
                if self._remaining == 0:
                    if state == _LENGTH:
                        self._complete()
                    elif data[pos : pos + 2] == b"\r\n":  # the CRLF after a chunk's data, usually in the same read
                        pos += 2
                        self._state = _SIZE
                    else:
                        self._state = _DATA_END
            elif state == _UNTIL_CLOSE:
                self._deliver(data[pos:] if pos else data, t_ns)
                return
            elif state == _IDLE:
                raise TransportError("the server sent bytes outside any response")
            else:
                mark = b"\r\n\r\n" if state == _HEAD else b"\n"
                i = data.find(mark, pos)
                if i == -1:
                    cap = _MAX_HEAD_BYTES if state == _HEAD else _MAX_CHUNK_LINE_BYTES
                    if n - pos > cap:
                        raise TransportError(f"response head or chunk line longer than {cap} bytes")
                    self._line = data[pos:]
                    return
                line = data[pos:i]
                pos = i + len(mark)
                self._line_done(state, line)

    def _line_done(self, state: int, line: bytes) -> None:
        if state == _SIZE:
            try:
                size = int(line.split(b";", 1)[0] if b";" in line else line, 16)  # int() ignores the CR
            except ValueError:
                raise TransportError(f"bad chunk size line {line[:80]!r}") from None
            if size:
                self._state, self._remaining = _DATA, size
            else:
                self._state = _TRAILER
        elif state == _HEAD:
            self._head(line)
        elif state == _DATA_END:
            if line.strip():
                raise TransportError("chunk data longer than its size line said")
            self._state = _SIZE
        elif not line.strip():  # _TRAILER: the blank line ends the body
            self._complete()

    def _head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise TransportError(f"not an HTTP response: {lines[0][:80]!r}")
        status = int(parts[1])
        if 100 <= status < 200:  # interim response (100 Continue): the real head follows
            return
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        self._keep_alive = parts[0] != "HTTP/1.0" and headers.get("connection", "").lower() != "close"
        te = headers.get("transfer-encoding", "").lower()
        if status in _NO_BODY:
            self._state, self._remaining = _LENGTH, 0
        elif "chunked" in te:
            self._state = _SIZE
        elif "content-length" in headers:
            try:
                self._state, self._remaining = _LENGTH, int(headers["content-length"])
            except ValueError:
                raise TransportError(f"bad Content-Length {headers['content-length']!r}") from None
        else:
            self._state, self._keep_alive = _UNTIL_CLOSE, False
        if self._sink is not None:
            self._sink.head(status, headers)
        if self._state == _LENGTH and self._remaining == 0:
            self._complete()

    # --- outcomes --------------------------------------------------------------------------------------------

    def _deliver(self, piece: bytes, t_ns: int) -> None:
        sink = self._sink
        if sink is not None and sink.data(piece, t_ns):
            self._sink = None  # drain the rest without it
            self._resolve()
            if self._state != _IDLE:
                loop = asyncio.get_running_loop()
                self._drain_timer = loop.call_later(DRAIN_GRACE_S, self.close)

    def _complete(self) -> None:
        self._state, self._sink = _IDLE, None
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        if self._keep_alive and self._transport is not None and not self._transport.is_closing():
            self.usable = True
            self._client._release(self)
        else:
            self.close()
        self._resolve()

    def _resolve(self) -> None:
        if self._fut is not None and not self._fut.done():
            self._fut.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self._state, self._sink = _IDLE, None
        self.close()
        if self._fut is not None and not self._fut.done():
            self._fut.set_exception(exc)
