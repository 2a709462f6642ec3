"""Twin of the native transport's response parser (csrc/fastmeter/http/response_parser.cpp), written from the
specification, not from that code: the whole response at once, in three plain passes.

1. Head: the bytes up to the first CRLFCRLF (at most 64 KiB); a 1xx head is skipped and the next one read.
2. Body: chunked (hex size line, optional ``;extensions``, data, CRLF; a 0-size chunk, trailer lines, blank line),
   Content-Length, or everything until the connection closes. Each body byte keeps its offset in the wire bytes.
3. Event stream (WHATWG): lines end at LF, CR or CRLF; ':' starts a comment; ``field:value`` loses one leading
   space; ``data`` lines join with LF; a blank line dispatches an event that had a data line. An event completes at
   the first byte of its blank line's line end. A line longer than ``max_line_bytes`` or an event whose joined data
   is longer than ``max_event_bytes`` stops the stream (a stream error); events before it stand.

Incremental parsing, line ends split between reads and the per-read time stamps are what the native code adds;
the property tests feed it random splits of random responses and ask both for the same events at the same reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_HEAD_BYTES = 64 * 1024
MAX_CHUNK_LINE_BYTES = 4096
ERROR_CONNECTION, ERROR_STREAM = 1, 2  # the native ErrorKind values


@dataclass
class ParsedResponse:
    status: int = 0
    complete: bool = False
    # (data, offset in the wire of the byte that completed the event)
    events: list[tuple[bytes, int]] = field(default_factory=list)
    body_offsets: list[int] = field(default_factory=list)  # wire offset of each body byte
    truncated: bool = False  # complete, but the body ended inside an event
    error: int | None = None


def parse_response(wire: bytes, max_line_bytes: int, max_event_bytes: int, eof: bool = False) -> ParsedResponse:
    out = ParsedResponse()
    pos = 0
    while True:  # 1. head (skipping interim 1xx heads)
        end = wire.find(b"\r\n\r\n", pos)
        if end == -1:
            if len(wire) - pos > MAX_HEAD_BYTES:
                out.error = ERROR_CONNECTION
            return out
        head_start, status = pos, int(wire[pos:end].split(b" ")[1][:3])
        pos = end + 4
        if not 100 <= status < 200:
            break
    out.status = status
    headers = {}
    for line in wire[head_start:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip().lower()
    body, offsets = bytearray(), out.body_offsets
    if b"chunked" in headers.get(b"transfer-encoding", b""):  # 2. body
        while True:
            nl = wire.find(b"\n", pos)
            if nl == -1:
                break
            size = int(wire[pos:nl].split(b";")[0].strip(), 16)
            pos = nl + 1
            if size == 0:
                while True:  # trailer lines up to a blank one
                    nl = wire.find(b"\n", pos)
                    if nl == -1:
                        break
                    blank = not wire[pos:nl].strip()
                    pos = nl + 1
                    if blank:
                        out.complete = True
                        break
                break
            piece = wire[pos : pos + size]
            body += piece
            offsets.extend(range(pos, pos + len(piece)))
            pos += size
            if pos > len(wire):
                break
            nl = wire.find(b"\n", pos)
            if nl == -1:
                break
            pos = nl + 1  # the CRLF that ends the chunk's data
    elif b"content-length" in headers:
        n = int(headers[b"content-length"])
        body += wire[pos : pos + n]
        offsets.extend(range(pos, pos + len(body)))
        out.complete = len(body) == n
    else:
        body += wire[pos:]
        offsets.extend(range(pos, len(wire)))
        out.complete = eof
    _events(bytes(body), out, max_line_bytes, max_event_bytes)
    return out


def _events(body: bytes, out: ParsedResponse, max_line_bytes: int, max_event_bytes: int) -> None:
    """3. the event stream: one pass over lines, in order."""
    data: bytes | None = None  # None: no data line yet in this event
    start = 0
    while start < len(body):
        ends = [i for i in (body.find(b"\n", start), body.find(b"\r", start)) if i != -1]
        end = min(ends) if ends else len(body)
        line = body[start:end]
        if len(line) > max_line_bytes:
            out.error = ERROR_STREAM
            return
        if end == len(body):  # an unfinished last line
            out.truncated = out.complete
            return
        if not line:
            if data is not None:
                out.events.append((data, out.body_offsets[end]))
            data = None
        elif not line.startswith(b":"):
            name, colon, value = line.partition(b":")
            if name == b"data":
                value = value[1:] if value.startswith(b" ") else value
                joined = value if data is None else data + b"\n" + value
                if len(joined) > max_event_bytes:
                    out.error = ERROR_STREAM
                    return
                data = joined
        start = end + 2 if body[end : end + 2] == b"\r\n" else end + 1
    out.truncated = out.complete and data is not None
