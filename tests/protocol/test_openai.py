"""OpenAI function-calling conversions."""

from __future__ import annotations

import pytest

from edge.protocol.openai import from_openai_call, to_openai_message, to_openai_tool


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
