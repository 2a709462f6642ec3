"""Incremental Server-Sent Events parser (bytes in, events out), linear in the bytes fed and bounded in memory.

Written here rather than taken from a library: it works on raw bytes (no decoding of every read to str) and can
run inside the transport's ``data_received``. It follows the WHATWG event-stream rules that streaming inference
servers rely on: lines end with LF, CRLF or CR; a line starting with ``:`` is a comment (keep-alive pings);
``field:value`` drops one leading space from the value, so ``data:{...}`` (TGI) and ``data: {...}`` (OpenAI
servers) are the same; several ``data`` lines join with LF; a blank line dispatches the event; an event without
data is not dispatched.

Linear time: CR and CRLF are turned into LF as bytes arrive (a CR at the end of a read is held back until the
next byte says whether it was half of a CRLF), and the search for the next LF resumes where the last one stopped,
so a 50 MB line fed in 64 KiB reads is scanned once. Bounded memory: a line longer than ``max_line_bytes`` or an
event whose data exceeds ``max_event_bytes`` raises ``SSEOverflowError`` at once instead of buffering on.
"""

from __future__ import annotations

from dataclasses import dataclass

# The largest single event an inference server sends is its final chunk (full text or logprobs): a few MB at most.
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024


class SSEOverflowError(ValueError):
    """A line or event exceeded its cap; the stream cannot be trusted further."""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its type ("message" unless the server named one) and its data bytes."""

    data: bytes
    event: str = "message"


class SSEParser:
    """Feed it whatever the socket returned; it returns the events completed by those bytes."""

    __slots__ = (
        "_buf",
        "_cr",
        "_data",
        "_data_bytes",
        "_event",
        "_scan",
        "max_event_bytes",
        "max_line_bytes",
        "truncated",
    )

    def __init__(
        self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    ) -> None:
        self.max_line_bytes = max_line_bytes
        self.max_event_bytes = max_event_bytes
        self._buf = bytearray()  # LF-normalized bytes of the unfinished line
        self._scan = 0  # _buf[:_scan] is known to hold no LF
        self._cr = False  # the last read ended with CR: drop an LF that starts the next one
        self._data: list[bytes] = []
        self._data_bytes = 0
        self._event = ""
        self.truncated = False  # set by close(): the stream stopped in the middle of an event

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._cr and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._cr = chunk[-1:] == b"\r"
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        buf = self._buf
        if not buf and not self._data and chunk[:5] == b"data:" and chunk.find(b"\n") == len(chunk) - 2:
            # The common case, one whole event per HTTP chunk ("data: {...}" + blank line): no line splitting.
            if chunk[-1:] == b"\n" and len(chunk) - 2 <= self.max_line_bytes:
                value = chunk[6:-2] if chunk[5:6] == b" " else chunk[5:-2]
                if len(value) < self.max_event_bytes:
                    return [SSEEvent(value)]
        events: list[SSEEvent] = []
        if not buf and chunk.endswith(b"\n"):  # whole lines in one read, nothing buffered
            lines = chunk.split(b"\n")
            lines.pop()
            for line in lines:
                self._line(line, events)
            return events
        buf += chunk
        start, pos = 0, buf.find(b"\n", self._scan)
        while pos != -1:
            self._line(bytes(buf[start:pos]), events)
            start = pos + 1
            pos = buf.find(b"\n", start)
        if start:
            del buf[:start]
        self._scan = len(buf)
        if len(buf) > self.max_line_bytes:
            self._reset()
            raise SSEOverflowError(f"an SSE line exceeds {self.max_line_bytes} bytes without a line end")
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: a final CR-terminated line still counts; an event without its blank line does not
        (it sets ``truncated``)."""
        events: list[SSEEvent] = []
        # A CR-terminated last line was already turned into a complete line by feed().
        self.truncated = bool(self._buf or self._data)
        self._reset()
        return events

    def _reset(self) -> None:
        self._buf.clear()
        self._scan = 0
        self._cr = False
        self._data = []
        self._data_bytes = 0
        self._event = ""

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(SSEEvent(b"\n".join(self._data), self._event or "message"))
            self._data = []
            self._data_bytes = 0
            self._event = ""
            return
        if line[0] == 0x3A:  # ":" comment / keep-alive
            return
        if len(line) > self.max_line_bytes:
            self._reset()
            raise SSEOverflowError(f"an SSE line of {len(line)} bytes exceeds the cap of {self.max_line_bytes}")
        field, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self._data_bytes += len(value) + 1
            if self._data_bytes > self.max_event_bytes:
                self._reset()
                raise SSEOverflowError(f"an SSE event's data exceeds {self.max_event_bytes} bytes")
            self._data.append(value)
        elif field == b"event":
            self._event = value.decode("utf-8", "replace")
        # "id" and "retry" only matter to reconnecting browsers; unknown fields are ignored by the spec.
