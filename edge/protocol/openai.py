"""OpenAI function calling: edge tools as ``tools`` entries, calls and results both ways.

Plain functions over JSON-shaped dicts, used by the control API's batch route
and by every caller that speaks to an OpenAI-compatible model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def to_openai_tool(name: str, description: str, input_schema: Mapping[str, Any]) -> dict[str, Any]:
    """An edge tool as an OpenAI ``tools`` entry."""
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": dict(input_schema)},
    }


def from_openai_call(call: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """An OpenAI ``tool_calls`` entry → (tool name, arguments).

    Raises:
        ValueError: the entry is not a function call, or its arguments are not
            a JSON object.
    """
    function = call.get("function") if call.get("type", "function") == "function" else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise ValueError("not an OpenAI function call: expected {type: function, function: {name}}")
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments of {function['name']} are not valid JSON: {exc}") from None
    if not isinstance(arguments, dict):
        raise ValueError(f"arguments of {function['name']} must be a JSON object")
    return function["name"], arguments


def to_openai_message(call_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """An edge result as the ``tool`` message answering OpenAI call ``call_id``."""
    content = result.get("output") if "error" not in result else f"Error: {result['error']}"
    return {"role": "tool", "tool_call_id": call_id, "content": str(content or "")}
