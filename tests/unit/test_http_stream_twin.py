"""The native response parser against its twin (fastmeter.reference.http_stream) on random responses cut at
random places: the same events, each stamped with the read that completed it, the same errors."""

from __future__ import annotations

import bisect

from hypothesis import given, settings
from hypothesis import strategies as st

from fastmeter import _core
from fastmeter.reference.http_stream import ERROR_CONNECTION, ERROR_STREAM, parse_response

_EOL = st.sampled_from([b"\n", b"\r\n", b"\r"])
_TEXT = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"r").replace(b"\n", b"n"))


@st.composite
def event_stream(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from([b"data:", b"data: ", b": ", b"event: ", b"id:", b"data"]))
            out += kind + (b"" if kind == b"data" else draw(_TEXT)) + draw(_EOL)
        if draw(st.booleans()):
            out += b"data: [DONE]" + draw(_EOL)
        out += draw(_EOL)  # the blank line that dispatches
    if draw(st.booleans()):  # cut short inside an event
        out += b"data: " + draw(_TEXT)
    return out


@st.composite
def response(draw: st.DrawFn) -> tuple[bytes, bool]:
    body = draw(event_stream())
    framing = draw(st.sampled_from(["chunked", "length", "close"]))
    head = b"HTTP/1.1 100 Continue\r\n\r\n" if draw(st.booleans()) else b""
    if framing == "chunked":
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
        chunks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)]) if b > a]
        ext = draw(st.sampled_from([b"", b";x=y"]))
        wire = b"".join(b"%x%s\r\n%s\r\n" % (len(c), ext, c) for c in chunks) + b"0\r\n\r\n"
        return head + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + wire, False
    if framing == "length":
        return head + b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body, False
    return head + b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + body, True


@settings(max_examples=400, deadline=None)
@given(response(), st.data(), st.sampled_from([(1 << 24, 1 << 24), (12, 30), (30, 12)]))
def test_native_parser_matches_twin_on_random_splits(
    resp: tuple[bytes, bool], data: st.DataObject, limits: tuple[int, int]
) -> None:
    wire, eof = resp
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(wire) - 1)), max_size=12))))
    starts = [0, *cuts]
    pieces = [wire[a:b] for a, b in zip(starts, [*cuts, len(wire)])]
    got = _core.http_parse_pieces(pieces, limits[0], limits[1], eof)
    want = parse_response(wire, limits[0], limits[1], eof)
    piece_of = lambda offset: bisect.bisect_right(starts, offset) - 1  # noqa: E731
    assert got["events"] == [(d, piece_of(o)) for d, o in want.events]
    assert (got["error"][0] if got["error"] else None) == want.error
    if want.error is None:
        assert got["status"] == want.status == 200
        assert got["complete"] == want.complete
        assert got["done_seen"] == any(d == b"[DONE]" for d, _ in want.events)
        assert got["reads"] == len({piece_of(o) for o in want.body_offsets})
        if want.complete:
            assert got["truncated"] == want.truncated


def test_overlong_head_and_bad_chunk_lines_are_connection_errors() -> None:
    head = b"HTTP/1.1 200 OK\r\nX: " + b"h" * 70_000
    assert _core.http_parse_pieces([head[:30_000], head[30_000:]])["error"][0] == ERROR_CONNECTION
    assert parse_response(head, 1 << 24, 1 << 24).error == ERROR_CONNECTION
    bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    assert _core.http_parse_pieces([bad])["error"][0] == ERROR_CONNECTION
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\ndata: 1\n\n"
    got = _core.http_parse_pieces([cut], eof=True)
    assert got["error"][0] == ERROR_CONNECTION and got["events"] == [(b"1", 0)]


def test_an_event_over_the_cap_is_a_stream_error_after_the_events_before_it() -> None:
    wire = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\ndata: ok\n\ndata: 0123456789\ndata: 0123456789\n\n"
    got = _core.http_parse_pieces([wire], 64, 15)
    assert got["error"][0] == ERROR_STREAM
    assert got["events"] == [(b"ok", 0)]
