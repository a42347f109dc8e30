"""MCP results as edge results; OpenAI function-calling conversions."""

from __future__ import annotations

import json

import pytest

from edge.mcp.results import (
    format_blocks,
    from_openai_call,
    map_call_result,
    to_openai_message,
    to_openai_tool,
)

MIXED = {
    "content": [
        {"type": "text", "text": "first"},
        {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
        {"type": "audio", "data": "AAAA", "mimeType": "audio/wav"},
        {"type": "resource", "resource": {"uri": "file:///a.txt", "mimeType": "text/plain", "text": "inside"}},
        {"type": "resource_link", "uri": "file:///b.txt", "name": "b"},
        {"type": "text", "text": "last"},
    ],
    "structuredContent": {"n": 1},
    "isError": False,
}


def test_every_kind_of_block_is_kept() -> None:
    result = map_call_result(MIXED)
    assert result["output"] == "first\n\ninside\n\nlast"
    assert result["images"] == [{"mimeType": "image/png", "data": "aGVsbG8="}]
    assert result["audio"] == [{"mimeType": "audio/wav", "data": "AAAA"}]
    assert result["resources"] == [
        {"uri": "file:///a.txt", "mimeType": "text/plain", "text": "inside"},
        {"uri": "file:///b.txt", "name": "b"},
    ]
    assert result["structured"] == {"n": 1}
    assert "error" not in result


def test_is_error_results_are_errors() -> None:
    result = map_call_result({"content": [{"type": "text", "text": "bad zone"}], "isError": True})
    assert result == {"error": "bad zone"}
    assert map_call_result({"content": [], "isError": True})["error"].startswith("the tool reported")


def test_structured_only_results_still_read() -> None:
    assert json.loads(map_call_result({"content": [], "structuredContent": {"a": 1}})["output"]) == {"a": 1}


def test_formats() -> None:
    md = format_blocks(MIXED["content"], MIXED["structuredContent"], "markdown")
    assert "![image](image/png)" in md and "[b](file:///b.txt)" in md and "```json" in md
    as_json = json.loads(format_blocks(MIXED["content"], MIXED["structuredContent"], "json"))
    assert as_json["structuredContent"] == {"n": 1} and len(as_json["content"]) == 6
    assert format_blocks(MIXED["content"], None, "plain") == "first\n\ninside\n\nlast"


def test_malformed_results_do_not_raise() -> None:
    assert map_call_result({"content": "nope"}) == {"output": ""}
    assert map_call_result({"content": [1, None, {"type": "text"}]}) == {"output": ""}


def test_openai_round_trip() -> None:
    tool = to_openai_tool("time__now", "[time] now", {"type": "object"})
    assert tool == {
        "type": "function",
        "function": {"name": "time__now", "description": "[time] now", "parameters": {"type": "object"}},
    }
    call = {"id": "c1", "type": "function", "function": {"name": "time__now", "arguments": '{"tz": "UTC"}'}}
    assert from_openai_call(call) == ("time__now", {"tz": "UTC"})
    assert from_openai_call({"function": {"name": "x", "arguments": {"a": 1}}}) == ("x", {"a": 1})
    assert to_openai_message("c1", {"output": "12:00"}) == {"role": "tool", "tool_call_id": "c1", "content": "12:00"}
    assert to_openai_message("c2", {"error": "boom"})["content"] == "Error: boom"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"type": "code"}, "not an OpenAI function call"),
        ({"function": {"name": "x", "arguments": "{nope"}}, "not valid JSON"),
        ({"function": {"name": "x", "arguments": "[1]"}}, "must be a JSON object"),
    ],
)
def test_bad_openai_calls_say_what_is_wrong(call: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_openai_call(call)


def test_oversized_blobs_are_omitted_and_say_so() -> None:
    from edge.mcp.results import MAX_BLOB_CHARS

    huge = "A" * (MAX_BLOB_CHARS + 4)
    result = map_call_result({"content": [
        {"type": "image", "data": huge, "mimeType": "image/png"},
        {"type": "resource", "resource": {"uri": "file:///x.bin", "blob": huge}},
    ]})
    assert result["images"] == [{"mimeType": "image/png", "omitted": f"{len(huge)} base64 characters, over edge's limit of {MAX_BLOB_CHARS}"}]
    assert "blob" not in result["resources"][0] and result["resources"][0]["uri"] == "file:///x.bin"
