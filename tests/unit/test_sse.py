"""The incremental SSE parser: framing rules, and the same events however the bytes are split."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastmeter.adapters.sse import SSEEvent, SSEOverflowError, SSEParser


def parse_all(*chunks: bytes) -> tuple[list[SSEEvent], bool]:
    p = SSEParser()
    events = [e for c in chunks for e in p.feed(c)]
    events += p.close()
    return events, p.truncated


def test_data_with_and_without_space_and_comments() -> None:
    stream = b': ping\n\ndata: {"a":1}\n\n:\ndata:{"b":2}\n\n: keep-alive\n\n'
    events, truncated = parse_all(stream)
    assert [e.data for e in events] == [b'{"a":1}', b'{"b":2}']
    assert not truncated


def test_only_one_leading_space_is_removed_and_colons_in_value_kept() -> None:
    events, _ = parse_all(b"data:  two spaces: x\n\n")
    assert events == [SSEEvent(b" two spaces: x")]


def test_multiline_data_event_type_and_unknown_fields() -> None:
    events, _ = parse_all(b"event: usage\nid: 7\nretry: 10\nfoo: bar\ndata: a\ndata: b\n\ndata: c\n\n")
    assert events == [SSEEvent(b"a\nb", "usage"), SSEEvent(b"c", "message")]


def test_crlf_and_lone_cr_line_endings() -> None:
    assert parse_all(b"data: x\r\n\r\ndata: y\r\rdata: z\n\n")[0] == [
        SSEEvent(b"x"),
        SSEEvent(b"y"),
        SSEEvent(b"z"),
    ]


def test_crlf_split_between_reads_is_one_line_ending() -> None:
    p = SSEParser()
    assert p.feed(b"data: x\r") == []
    # The CR alone already ends the blank line: the event is dispatched without waiting for the LF.
    assert p.feed(b"\n\r") == [SSEEvent(b"x")]
    assert p.feed(b"\n") == []
    assert p.feed(b"data: y\n\n") == [SSEEvent(b"y")]


def test_event_without_data_is_not_dispatched() -> None:
    assert parse_all(b"event: ping\n\n\n\n")[0] == []


def test_unterminated_event_at_close_is_truncated_not_dispatched() -> None:
    events, truncated = parse_all(b"data: a\n\ndata: b")
    assert events == [SSEEvent(b"a")]
    assert truncated
    events, truncated = parse_all(b"data: a\n\ndata: b\n")
    assert events == [SSEEvent(b"a")]
    assert truncated


def test_final_cr_terminated_blank_line_dispatches_at_close() -> None:
    events, truncated = parse_all(b"data: a\r\r")
    assert events == [SSEEvent(b"a")]
    assert not truncated


_STREAM = (
    b': hello\n\ndata: {"choices":[{"text":"a"}]}\n\ndata:{"x":"y\\u00e9"}\r\n\r\n'
    b"event: e\ndata: 1\ndata: 2\n\n: ping\ndata: [DONE]\n\n"
)


@given(st.lists(st.integers(0, len(_STREAM)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(_STREAM)]
    chunks = [_STREAM[a:b] for a, b in itertools.pairwise(bounds)]
    assert parse_all(*chunks) == parse_all(_STREAM)
    assert [e.data for e in parse_all(_STREAM)[0]] == [
        b'{"choices":[{"text":"a"}]}',
        b'{"x":"y\\u00e9"}',
        b"1\n2",
        b"[DONE]",
    ]


def test_byte_by_byte_feed() -> None:
    p = SSEParser()
    events = [e for i in range(len(_STREAM)) for e in p.feed(_STREAM[i : i + 1])]
    assert [e.data for e in events][-1] == b"[DONE]"
    assert len(events) == 4


def test_long_line_fed_in_pieces_is_one_event() -> None:
    payload = b"x" * (3 * 1024 * 1024)
    stream = b"data: " + payload + b"\r\n\r\n"
    p = SSEParser()
    events = [e for i in range(0, len(stream), 65536) for e in p.feed(stream[i : i + 65536])]
    assert events == [SSEEvent(payload)]


def test_line_over_the_cap_raises_as_soon_as_it_is_buffered() -> None:
    p = SSEParser(max_line_bytes=1000, max_event_bytes=10_000)
    assert p.feed(b"data: " + b"a" * 900) == []
    with pytest.raises(SSEOverflowError, match="line exceeds 1000 bytes"):
        p.feed(b"a" * 200)
    # A complete over-long line in a single read is caught too.
    with pytest.raises(SSEOverflowError, match="exceeds the cap of 1000"):
        SSEParser(max_line_bytes=1000).feed(b"data: " + b"b" * 1000 + b"\n\n")


def test_event_over_the_cap_raises_even_when_each_line_is_small() -> None:
    p = SSEParser(max_line_bytes=100, max_event_bytes=250)
    line = b"data: " + b"c" * 90 + b"\n"
    assert p.feed(line * 2) == []
    with pytest.raises(SSEOverflowError, match="event's data exceeds 250 bytes"):
        p.feed(line)
    # Comments do not count towards an event, and the caps leave the next event alone.
    p = SSEParser(max_line_bytes=100, max_event_bytes=250)
    assert p.feed(b": " + b"z" * 90 + b"\n") == []
    assert p.feed(line + b"\n") == [SSEEvent(b"c" * 90)]
