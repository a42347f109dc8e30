"""MCP results as edge results."""

from __future__ import annotations

import json

from edge.mcp.results import format_blocks, map_call_result

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


def test_oversized_blobs_are_omitted_and_say_so() -> None:
    from edge.mcp.results import MAX_BLOB_CHARS

    huge = "A" * (MAX_BLOB_CHARS + 4)
    result = map_call_result({"content": [
        {"type": "image", "data": huge, "mimeType": "image/png"},
        {"type": "resource", "resource": {"uri": "file:///x.bin", "blob": huge}},
    ]})
    assert result["images"] == [{"mimeType": "image/png", "omitted": f"{len(huge)} base64 characters, over edge's limit of {MAX_BLOB_CHARS}"}]
    assert "blob" not in result["resources"][0] and result["resources"][0]["uri"] == "file:///x.bin"
