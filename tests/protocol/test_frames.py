"""The frame parser: plain code, tested synchronously and with hypothesis."""

from __future__ import annotations

import json

from hypothesis import given, settings, strategies as st

from edge.protocol import (
    MAX_FRAME_CHARS,
    ApprovedTools,
    Cancel,
    Connected,
    Ping,
    ProtocolError,
    Request,
    Response,
    ToolCall,
    Unknown,
    parse_frame,
)
from edge.protocol.frames import Frame


def test_cloud_frames() -> None:
    assert parse_frame('{"type":"connected","userId":"u1"}') == Connected("u1")
    assert parse_frame(b'{"type":"ping"}') == Ping()
    assert parse_frame('{"type":"approved_tools","tools":["a","b"]}') == ApprovedTools(
        frozenset({"a", "b"})
    )
    call = parse_frame(
        '{"jsonrpc":"2.0","id":7,"method":"tool_call","params":{"tool":"grep","args":{"pattern":"x"}}}'
    )
    assert call == ToolCall(7, "grep", {"pattern": "x"})
    assert parse_frame('{"jsonrpc":"2.0","method":"cancel","params":{"id":"c-1"}}') == Cancel("c-1")
    assert parse_frame('{"type":"something_new","x":1}') == Unknown("something_new")


def test_tool_call_without_args_gets_empty_args() -> None:
    frame = parse_frame('{"jsonrpc":"2.0","id":"a","method":"tool_call","params":{"tool":"t"}}')
    assert frame == ToolCall("a", "t", {})


def test_connected_may_name_the_gateway_and_the_versions_manifest() -> None:
    frame = parse_frame(
        '{"type":"connected","userId":"u1","asrUrl":"wss://c/asr",'
        '"gatewayUrl":"https://c/v1","versionsUrl":"https://c/versions.json"}'
    )
    assert frame == Connected("u1", "wss://c/asr", "https://c/v1", "https://c/versions.json")
    local = parse_frame('{"type":"connected","userId":"u1","gatewayUrl":"http://127.0.0.1:9/v1"}')
    assert isinstance(local, Connected)
    assert local.gateway_url == "http://127.0.0.1:9/v1"
    assert local.versions_url is None


def test_malformed_frames_are_errors_with_reasons() -> None:
    cases = {
        "not json": "not valid JSON",
        "[1,2]": "JSON list, not an object",
        '{"no":"type"}': 'no string "type"',
        '{"type":"approved_tools","tools":"all"}': "list of strings",
        '{"type":"connected","userId":5}': "non-string",
        '{"type":"connected","userId":"u","gatewayUrl":"ftp://x"}': '"gatewayUrl"',
        '{"type":"connected","userId":"u","gatewayUrl":7}': '"gatewayUrl"',
        '{"type":"connected","userId":"u","versionsUrl":"http://x/v.json"}': '"versionsUrl"',
        '{"type":"connected","userId":"u","versionsUrl":"https://x/v.json\\n"}': '"versionsUrl"',
        '{"type":"connected","userId":"u","gatewayUrl":"https://x /v1"}': '"gatewayUrl"',
        '{"jsonrpc":"2.0","id":1,"method":"tool_call","params":{"tool":""}}': "non-empty",
        '{"jsonrpc":"2.0","id":1,"method":"tool_call","params":[1]}': "params",
        '{"jsonrpc":"2.0","id":1,"method":"tool_call","params":{"tool":"t","args":[1]}}': (
            "must be an object, not a JSON array"
        ),
        '{"jsonrpc":"2.0","method":"tool_call","params":{"tool":"t"}}': 'without an "id"',
        '{"jsonrpc":"2.0","id":true,"method":"tool_call","params":{"tool":"t"}}': '"id" must be',
        '{"jsonrpc":"2.0","id":1.5,"method":"tool_call","params":{"tool":"t"}}': '"id" must be',
        '{"jsonrpc":"1.0","id":1,"method":"tool_call"}': '"2.0"',
        '{"jsonrpc":"2.0","id":1,"method":"explode"}': "unknown method",
        '{"jsonrpc":"2.0","method":"cancel","params":{}}': '"cancel" needs',
        '{"type":"ping","n":NaN}': "not valid JSON",
    }
    for text, reason in cases.items():
        frame = parse_frame(text)
        assert isinstance(frame, ProtocolError), text
        assert reason in frame.message, (text, frame.message)


def test_errors_keep_the_request_id_when_usable() -> None:
    frame = parse_frame('{"jsonrpc":"2.0","id":"k","method":"tool_call","params":{"tool":3}}')
    assert isinstance(frame, ProtocolError)
    assert frame.id == "k"
    frame = parse_frame('{"jsonrpc":"2.0","id":[1],"method":"tool_call","params":{"tool":"t"}}')
    assert isinstance(frame, ProtocolError)
    assert frame.id is None


def test_oversized_frame_is_refused_before_parsing() -> None:
    frame = parse_frame("x" * (MAX_FRAME_CHARS + 1))
    assert isinstance(frame, ProtocolError)
    assert "limit" in frame.message


def test_deeply_nested_json_is_an_error_not_a_crash() -> None:
    frame = parse_frame("[" * 100_000 + "]" * 100_000)
    assert isinstance(frame, ProtocolError)


FRAME_TYPES = (
    Connected,
    ApprovedTools,
    ToolCall,
    Cancel,
    Request,
    Response,
    Ping,
    Unknown,
    ProtocolError,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
@settings(max_examples=400)
def test_any_json_parses_to_a_frame(value: object) -> None:
    assert isinstance(parse_frame(json.dumps(value)), FRAME_TYPES)


frame_like = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0"]) | json_values,
        "id": st.integers() | st.text(max_size=5) | json_values,
        "method": st.sampled_from(["tool_call", "cancel", "other"]) | json_values,
        "type": st.sampled_from(["ping", "connected", "approved_tools", "x"]) | json_values,
        "params": st.fixed_dictionaries(
            {},
            optional={
                "tool": st.text(max_size=5) | json_values,
                "args": json_values,
                "id": json_values,
            },
        )
        | json_values,
        "tools": st.lists(st.text(max_size=5)) | json_values,
        "userId": st.text(max_size=5) | json_values,
    },
)


@given(frame_like)
@settings(max_examples=600)
def test_frame_shaped_json_parses_to_a_well_typed_frame(value: dict[str, object]) -> None:
    frame: Frame = parse_frame(json.dumps(value))
    assert isinstance(frame, FRAME_TYPES)
    if isinstance(frame, ToolCall):
        assert isinstance(frame.tool, str) and frame.tool
        assert isinstance(frame.args, dict)
        assert isinstance(frame.id, str | int) and not isinstance(frame.id, bool)
    if isinstance(frame, ProtocolError) and frame.id is not None:
        assert isinstance(frame.id, str | int)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert isinstance(parse_frame(data), FRAME_TYPES)


def test_extension_methods_parse_as_requests_and_notifications() -> None:
    frame = parse_frame('{"jsonrpc":"2.0","id":7,"method":"schedule_add","params":{"tool":"x"}}')
    assert frame == Request("schedule_add", {"tool": "x"}, 7)
    assert parse_frame('{"jsonrpc":"2.0","method":"agent_cancel"}') == Request("agent_cancel", {})
    bad = parse_frame('{"jsonrpc":"2.0","id":1,"method":"agent_request","params":[1]}')
    assert isinstance(bad, ProtocolError) and bad.id == 1 and "object" in bad.message
    bad = parse_frame('{"jsonrpc":"2.0","id":true,"method":"agent_request"}')
    assert isinstance(bad, ProtocolError) and bad.id is None
    assert isinstance(parse_frame('{"jsonrpc":"2.0","id":1,"method":"agent_nope"}'), ProtocolError)


def test_responses_to_edges_requests_carry_their_id() -> None:
    assert parse_frame('{"jsonrpc":"2.0","id":"e-1","result":{"ok":true}}') == Response(
        "e-1", {"ok": True}
    )
    error = parse_frame('{"jsonrpc":"2.0","id":3,"error":{"code":-32601,"message":"no"}}')
    assert error == Response(3, None, {"code": -32601, "message": "no"})
    assert parse_frame('{"jsonrpc":"2.0","id":null,"result":1}') == Unknown("jsonrpc-response")
