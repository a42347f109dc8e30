"""The plugin-runner RPC codec: envelopes round-trip through frames cut anywhere, and a
frame that breaks the protocol is refused with a reason, never half-read."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings, strategies as st

from edge.protocol.rpc import (
    MAX_DEPTH,
    PROTOCOL,
    Envelope,
    FrameDecoder,
    RpcError,
    RpcProtocolError,
    decode_body,
    encode_frame,
    event,
    request,
    response,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
    | st.text() | st.binary(max_size=64),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)  # fmt: skip

envelopes = st.builds(
    Envelope,
    kind=st.sampled_from(["request", "response", "event"]),
    id=st.integers(0, 2**63 - 1),
    method=st.text(min_size=1, max_size=20),
    plugin=st.none() | st.text(max_size=20),
    deadline=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    payload=json_values,
    error=st.none() | st.builds(RpcError, code=st.text(max_size=10), message=st.text(max_size=40)),
)


@settings(max_examples=300, deadline=None)
@given(envelopes, st.lists(st.integers(1, 50), max_size=8))
def test_envelopes_round_trip_through_frames_cut_anywhere(envelope: Envelope, cuts: list[int]) -> None:
    data = encode_frame(envelope) * 2
    decoder = FrameDecoder()
    out: list[Envelope] = []
    position = 0
    for cut in cuts:
        decoder.feed(data[position : position + cut])
        out += decoder.envelopes()
        position += cut
    decoder.feed(data[position:])
    out += decoder.envelopes()
    assert out == [envelope, envelope]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bodies_decode_or_fail_with_a_reason(body: bytes) -> None:
    try:
        decode_body(body)
    except RpcProtocolError as exc:
        assert str(exc)


def frame(body: Any, raw: bool = False) -> bytes:
    data = body if raw else msgpack.packb(body)
    return struct.pack(">I", len(data)) + data


GOOD = {"v": PROTOCOL, "id": 1, "kind": "request", "method": "ping"}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xff\xff\xff", "announces 4294967295 bytes, more than the limit"),
        (frame(b"\xc1", raw=True), "not valid msgpack"),
        (frame([1, 2]), "must be a map"),
        (frame({**GOOD, "v": 2}), "envelope version 2"),
        (frame({**GOOD, "kind": "shout"}), "kind 'shout'"),
        (frame({**GOOD, "id": -1}), "not a non-negative integer"),
        (frame({**GOOD, "id": True}), "not a non-negative integer"),
        (frame({**GOOD, "method": ""}), "needs a method"),
        (frame({**GOOD, "plugin": 3}), "plugin must be"),
        (frame({**GOOD, "deadline": "soon"}), "deadline must be"),
        (frame({**GOOD, "error": {"code": 1}}), "error must be a map"),
        (frame({**GOOD, 1: 2}), "not valid msgpack"),  # map keys must be strings
        (frame(msgpack.packb(GOOD) + b"\x00", raw=True), "more than one msgpack value"),
    ],
)
def test_broken_frames_are_refused_with_their_reason(data: bytes, reason: str) -> None:
    decoder = FrameDecoder()
    with pytest.raises(RpcProtocolError, match=reason):
        decoder.feed(data)
        decoder.envelopes()
    with pytest.raises(RpcProtocolError):  # and the decoder stays broken
        decoder.feed(frame(GOOD))


def test_an_oversized_frame_is_refused_from_its_prefix_alone() -> None:
    decoder = FrameDecoder(max_size=1024)
    with pytest.raises(RpcProtocolError, match="1025 bytes, more than the limit of 1024"):
        decoder.feed(struct.pack(">I", 1025))  # no body was read or buffered
    assert decoder.wanted() == 4


def test_nesting_is_limited() -> None:
    deep: Any = "x"
    for _ in range(MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(RpcProtocolError, match=f"deeper than {MAX_DEPTH}"):
        decode_body(msgpack.packb({**GOOD, "payload": deep}))
    ok: Any = "x"
    for _ in range(MAX_DEPTH - 1):
        ok = [ok]
    assert decode_body(msgpack.packb({**GOOD, "payload": ok})).payload == ok


def test_encoding_refuses_what_cannot_go() -> None:
    with pytest.raises(RpcProtocolError, match="cannot encode"):
        encode_frame(request(1, "call", {"x": object()}))
    with pytest.raises(RpcProtocolError, match="more than 10"):
        encode_frame(request(1, "call", "x" * 100), max_size=10)


def test_builders() -> None:
    ask = request(7, "call", {"a": 1}, plugin="p", deadline=12.5)
    answer = response(ask, {"ok": True})
    assert (answer.kind, answer.id, answer.method, answer.plugin) == ("response", 7, "call", "p")
    failed = response(ask, error=RpcError("tool_error", "boom"))
    assert decode_body(encode_frame(failed)[4:]).error == RpcError("tool_error", "boom")
    note = event("progress", {"id": 7}, plugin="p")
    assert note.kind == "event" and note.id == 0


def test_a_frame_of_too_many_values_is_refused_cheaply() -> None:
    import time

    from edge.protocol.rpc import MAX_VALUES

    wide = msgpack.packb({**GOOD, "payload": [{}] * (MAX_VALUES + 1)})
    start = time.monotonic()
    with pytest.raises(RpcProtocolError):
        decode_body(wide)
    many = msgpack.packb({**GOOD, "payload": [[{}] * 1000] * 200})  # each array is short
    with pytest.raises(RpcProtocolError, match=f"more than {MAX_VALUES} values"):
        decode_body(many)
    assert time.monotonic() - start < 5  # not seconds per frame (a generous bound)
