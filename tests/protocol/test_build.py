"""Every edge → cloud frame can be sent, whatever text it carries.

Hypothesis drives each outgoing builder with arbitrary text, lone surrogates
included (a file name decoded with ``surrogateescape``, a call id the cloud sent
as ``"\\udc80"``): the encoded frame is valid UTF-8 and decodes to the same value.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from edge.protocol import (
    capability_report,
    encode,
    error_result,
    invalid_request,
    ok_result,
    pong,
    progress_notification,
    tool_response,
    truncate_result,
)
from edge.protocol.asr import (
    Transcript,
    backfill_message,
    gap_message,
    live_message,
    start_message,
    stop_message,
)
from edge.protocol.openai import to_openai_message, to_openai_tool

#: Any text a Python string can hold: every code point, lone surrogates included.
ANY_TEXT = st.text(alphabet=st.characters(codec=None, min_codepoint=0), max_size=40)
SURROGATES = st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
TEXT = st.one_of(ANY_TEXT, SURROGATES, st.tuples(ANY_TEXT, SURROGATES).map("".join))
IDS = st.one_of(TEXT, st.integers(min_value=-(2**63), max_value=2**63))
FINITE = st.floats(allow_nan=False, allow_infinity=False)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | FINITE | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def joined(value: Any) -> Any:
    """``value`` as a JSON decoder returns it: an escaped surrogate pair is one character."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "surrogatepass")
    if isinstance(value, list):
        return [joined(v) for v in value]
    if isinstance(value, dict):
        return {joined(k): joined(v) for k, v in value.items()}
    return value


def sendable(frame: dict[str, Any]) -> None:
    text = encode(frame)
    text.encode("utf-8")  # what the WebSocket does with it; raises on a lone surrogate
    assert json.loads(text) == joined(json.loads(json.dumps(frame)))


@settings(max_examples=300)
@given(IDS, JSONISH, TEXT)
def test_tool_responses_always_encode(request_id: str | int, value: Any, text: str) -> None:
    sendable(tool_response(request_id, ok_result(text, value=value, path=text)))
    sendable(tool_response(request_id, error_result(f"cannot read {text}", path=text)))
    sendable(tool_response(request_id, truncate_result(ok_result(text * 3), limit=5)))


@given(IDS, st.floats(allow_nan=False, allow_infinity=False), st.none() | st.floats(0, 1e9), TEXT)
def test_progress_always_encodes(
    request_id: str | int, done: float, total: float | None, message: str
) -> None:
    sendable(progress_notification(request_id, done, total, message))


@given(TEXT)
def test_invalid_request_and_pong_always_encode(message: str) -> None:
    sendable(invalid_request(message))
    sendable(pong())


@given(TEXT, TEXT, st.lists(TEXT, max_size=3), JSONISH)
def test_capability_reports_always_encode(
    host: str, name: str, tools: list[str], schema: Any
) -> None:
    sendable(
        capability_report(
            platform="linux-x86_64",
            edge_version="0",
            hostname=host,
            audio_sources=[{"name": name, "kind": "microphone"}],
            tools=[{"name": t, "description": name, "input_schema": {"x": schema}} for t in tools],
            limits={"maxCalls": 1},
            mcp_servers=[{"name": name, "status": "ready", "tools": tools, "lastError": host}],
        )
    )


@given(TEXT, TEXT, st.integers(0, 2**31), st.integers(0, 2**31))
def test_asr_messages_always_encode(chat: str, source: str, offset: int, frames: int) -> None:
    for text in (
        start_message(chat, source, 16000, 1, 20),
        backfill_message(offset, frames),
        gap_message(offset, frames),
        live_message(offset),
        stop_message(frames),
    ):
        text.encode("utf-8")
        json.loads(text)
    sendable(Transcript(chat, True, 0.0, 1.0).to_json())


@given(TEXT, TEXT, JSONISH)
def test_openai_messages_always_encode(call_id: str, text: str, schema: Any) -> None:
    sendable(to_openai_message(call_id, ok_result(text)))
    sendable(to_openai_message(call_id, error_result(text)))
    sendable(to_openai_tool(text, text, {"x": schema}))


def test_a_lone_surrogate_is_escaped_and_comes_back_the_same() -> None:
    name = b"caf\xe9.txt".decode("utf-8", "surrogateescape")  # how os.listdir shows it
    text = encode(tool_response("id\udc80", ok_result(name)))
    assert "\\udce9" in text
    assert "\\udc80" in text
    back = json.loads(text)
    assert back["id"] == "id\udc80"
    assert back["result"]["output"].encode("utf-8", "surrogateescape") == b"caf\xe9.txt"


def test_plain_text_is_not_escaped() -> None:
    assert encode(ok_result("é 😀 \u2028")) == '{"output":"é 😀 \u2028"}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1, 2}, b"bytes"])
def test_what_json_cannot_carry_raises(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        encode(ok_result("x", value=bad))
