"""An in-test HTTP/1.1 server with scripted, timed streaming responses.

It runs an asyncio server on its own thread, so sync and async tests can both use it. A handler maps each parsed
request to a ``Script``: status, headers and a list of steps — ``Send(bytes)`` writes one HTTP chunk (flushed at
once, so partial SSE events reach the client in separate reads when a ``Sleep`` separates them), ``Sleep(s)``
pauses, ``Raw(bytes)`` writes bytes without chunk framing, ``Reset()`` aborts the TCP connection with RST,
``Cut()`` closes it mid-body. The server records every request, the most requests it ever had in flight at once
and how many connections it accepted.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Raw:
    """Write bytes as they are, without chunk framing: for scripting odd or broken HTTP framing."""

    data: bytes


@dataclass(frozen=True)
class Reset:
    """Abort with a TCP RST (SO_LINGER 0): the client sees 'connection reset'."""


@dataclass(frozen=True)
class Cut:
    """Close the socket without the final empty chunk: the body is incomplete."""


@dataclass(frozen=True)
class SleepUntil:
    """Pause until a CLOCK_MONOTONIC instant (time.monotonic_ns): a scheduled stream does not drift with each
    sleep's overshoot."""

    t_ns: int


Step = Send | Raw | Sleep | Reset | Cut | SleepUntil


@dataclass
class Script:
    steps: list[Step] = field(default_factory=list)
    status: int = 200
    content_type: str = "text/event-stream"
    chunked: bool = True  # False: the Send steps are joined and sent with Content-Length
    close: bool = False  # close the connection after the response (as an idle keep-alive timeout would)
    final_chunk: bool = True  # False: the steps write the body's end themselves (Raw), or never do
    hold_open: bool = False  # after the steps, keep the connection open and silent (a stream that never ends)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def sse(obj: Any, space: bool = True) -> bytes:
    """One SSE event: ``data: {json}`` and a blank line (``data:{json}`` when space is False, as TGI sends)."""
    payload = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
    if isinstance(payload, str):
        payload = payload.encode()
    return b"data:" + (b" " if space else b"") + payload + b"\n\n"


class FakeServer:
    def __init__(self, handler: Callable[[Request], Script], ssl_context: ssl.SSLContext | None = None) -> None:
        self._handler = handler
        self._ssl = ssl_context  # serve HTTPS with this context
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        # A connection accepted as the server closed may still be on its way to _serve (asyncio's accept task):
        # cancelled here, its transport closes, and the next turn releases the socket.
        self._loop.run_until_complete(_cancel_leftover_tasks())
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        with self._lock:
            self.connections += 1
        try:
            while True:
                req = await _read_request(reader)
                if req is None:
                    break
                with self._lock:
                    self.requests.append(req)
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    keep = await _respond(writer, self._handler(req))
                finally:
                    with self._lock:
                        self.in_flight -= 1
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # cancelled: the server is shutting down under a held-open stream
        finally:
            self._conns.discard(task)
            if not writer.transport.is_closing():
                writer.close()


async def _cancel_leftover_tasks() -> None:
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in leftover:
        task.cancel()
    await asyncio.gather(*leftover, return_exceptions=True)
    await asyncio.sleep(0.01)


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Request(method, path, headers, body)


async def _respond(writer: asyncio.StreamWriter, script: Script) -> bool:
    """Play a script; return whether the connection may serve another request."""
    head = [f"HTTP/1.1 {script.status} X", f"Content-Type: {script.content_type}"]
    if script.chunked:
        head.append("Transfer-Encoding: chunked")
    else:
        body = b"".join(s.data for s in script.steps if isinstance(s, Send))
        head.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    if not script.chunked:
        writer.write(body)
        await writer.drain()
        return True
    for step in script.steps:
        if isinstance(step, Send):
            writer.write(b"%x\r\n%s\r\n" % (len(step.data), step.data))
            await writer.drain()
        elif isinstance(step, Raw):
            writer.write(step.data)
            await writer.drain()
        elif isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
        elif isinstance(step, SleepUntil):
            await asyncio.sleep(max(0.0, (step.t_ns - time.monotonic_ns()) * 1e-9))
        elif isinstance(step, Reset):
            sock = writer.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        else:
            writer.close()
            return False
    if script.hold_open:
        await asyncio.sleep(3600)  # the test ends first; the server's shutdown cancels this
    if script.final_chunk:
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    if script.close:
        writer.close()
        return False
    return True
