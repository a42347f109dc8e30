"""The event-stream decoder: WHATWG line and field rules, and the same events whatever the
pieces the bytes arrive in."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from edge.protocol.sse import SseDecoder, SseError, SseEvent


def decode(*pieces: bytes, max_line: int = 1024) -> list[SseEvent]:
    """Every event of a stream given in these pieces, closed at the end."""
    decoder = SseDecoder(max_line=max_line)
    events = [event for piece in pieces for event in decoder.feed(piece)]
    return events + decoder.close()


def test_data_events_and_done() -> None:
    stream = b'data: {"a": 1}\n\ndata: [DONE]\n\n'
    assert decode(stream) == [SseEvent("message", '{"a": 1}'), SseEvent("message", "[DONE]")]


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_every_line_end(end: bytes) -> None:
    stream = end.join([b"event: chunk", b"data: one", b"data: two", b"", b"data:x", b"", b""])
    assert decode(stream) == [SseEvent("chunk", "one\ntwo"), SseEvent("message", "x")]


def test_fields_comments_and_spaces() -> None:
    stream = (
        b": a comment\n"
        b"data\n"  # a field with no colon: empty value
        b"data:  two spaces\n"  # only one space is stripped
        b"unknown: ignored\n"
        b"retry: 100\n"
        b"id: 7\n"
        b"\n"
        b"event: lonely\n"  # fields without data: nothing dispatched, type reset
        b"\n"
        b"data: after\n"
        b"\n"
    )
    assert decode(stream) == [
        SseEvent("message", "\n two spaces", "7"),
        SseEvent("message", "after", "7"),
    ]


def test_id_with_nul_is_ignored_and_empty_id_resets() -> None:
    stream = b"id: 1\ndata: a\n\nid: 2\0\ndata: b\n\nid\ndata: c\n\n"
    assert [event.id for event in decode(stream)] == ["1", "1", ""]


def test_empty_data_field_is_dispatched() -> None:
    assert decode(b"data:\n\n") == [SseEvent("message", "")]


def test_bom_is_dropped_once_even_split() -> None:
    bom = "\ufeff".encode()
    assert decode(bom[:1], bom[1:] + b"data: a\n\n") == [SseEvent("message", "a")]
    assert decode(bom + bom + b"data: a\n\n") == []  # the second BOM is part of a field name


def test_crlf_split_between_pieces_is_one_line_end() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n") == []  # not the blank line that would dispatch
    assert decoder.feed(b"\r\n") == [SseEvent("message", "a")]


def test_cr_at_piece_end_dispatches_at_once() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\r") == [SseEvent("message", "a")]


def test_unterminated_last_event_is_dropped() -> None:
    decoder = SseDecoder()
    assert decoder.feed(b"data: a\n\ndata: b\n") == [SseEvent("message", "a")]
    assert decoder.close() == []
    # After close the decoder reads a new stream.
    assert decoder.feed(b"data: c\n\n") == [SseEvent("message", "c")]


def test_bad_utf8_is_replaced() -> None:
    assert decode(b"data: \xff\xfe ok\n\n") == [SseEvent("message", "\ufffd\ufffd ok")]
    assert decode("data: é".encode()[:-1], b"\n\n") == [SseEvent("message", "\ufffd")]


def test_long_line_is_refused_complete_or_not() -> None:
    with pytest.raises(SseError, match="longer than 16"):
        decode(b"data: " + b"x" * 20 + b"\n\n", max_line=16)
    decoder = SseDecoder(max_line=16)
    decoder.feed(b"data: 0123456789")
    with pytest.raises(SseError):
        decoder.feed(b"x")
    assert decode(b"data: 0123456789\n\n", max_line=16) == [SseEvent("message", "0123456789")]


LINES = st.sampled_from(
    [
        "data: {\"a\": 1}", "data:", "data", "event: x", "id: 3", ": c", "", "", "retry: 1",
        "data: é ü ☃", "data:  sp",
    ]
)  # fmt: skip


@settings(max_examples=200)
@given(
    st.lists(st.tuples(LINES, st.sampled_from(["\n", "\r\n", "\r"])), max_size=20),
    st.booleans(),
    st.data(),
)
def test_any_split_gives_the_same_events(
    lines: list[tuple[str, str]], bom: bool, data: st.DataObject
) -> None:
    stream = ("\ufeff" if bom else "") + "".join(line + end for line, end in lines)
    raw = stream.encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    assert decode(*pieces) == decode(raw)
    assert decode(*(raw[i : i + 1] for i in range(len(raw)))) == decode(raw)
