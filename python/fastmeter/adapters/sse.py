"""Incremental Server-Sent Events parser (bytes in, events out).

Written here rather than taken from a library: the one common choice (httpx-sse) is not installed, and a parser
that works on raw bytes avoids decoding every read to str and splitting it twice. It follows the WHATWG
event-stream rules that streaming inference servers rely on: lines end with LF, CRLF or CR; a line starting with
``:`` is a comment (keep-alive pings); ``field:value`` drops one leading space from the value, so ``data:{...}``
(TGI) and ``data: {...}`` (OpenAI servers) are the same; several ``data`` lines join with LF; a blank line
dispatches the event; an event without data is not dispatched.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its type ("message" unless the server named one) and its data bytes."""

    data: bytes
    event: str = "message"


class SSEParser:
    """Feed it whatever the socket returned; it returns the events completed by those bytes."""

    __slots__ = ("_data", "_event", "_pending", "truncated")

    def __init__(self) -> None:
        self._pending = b""  # an unterminated line (or a lone CR that may be half of CRLF)
        self._data: list[bytes] = []
        self._event = ""
        self.truncated = False  # set by close(): the stream stopped in the middle of an event

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._pending + chunk if self._pending else chunk
        if not buf:
            return []
        lines = buf.splitlines(keepends=True)
        last = lines[-1]
        # A last line without its terminator is kept; so is one ending in CR, whose LF may come in the next read.
        if last.endswith(b"\n"):
            self._pending = b""
        else:
            self._pending = last
            lines.pop()
        events: list[SSEEvent] = []
        for line in lines:
            self._line(line.rstrip(b"\r\n"), events)
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: a final CR-terminated line still counts; an event without its blank line does not
        (it sets ``truncated``)."""
        events: list[SSEEvent] = []
        pending, self._pending = self._pending, b""
        if pending.endswith(b"\r"):
            self._line(pending[:-1], events)
            pending = b""
        self.truncated = bool(pending or self._data)
        self._data = []
        self._event = ""
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(SSEEvent(b"\n".join(self._data), self._event or "message"))
            self._data = []
            self._event = ""
            return
        if line[0] == 0x3A:  # ":" comment / keep-alive
            return
        field, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._data.append(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")
        # "id" and "retry" only matter to reconnecting browsers; unknown fields are ignored by the spec.
