"""Tool results as the cloud sees them.

A result is a JSON object with ``"output"`` (a string) on success or ``"error"``
(a string) on failure, plus tool-specific fields. An output longer than
``MAX_OUTPUT_CHARS`` is cut there and marked ``"truncated": true`` with
``"original_length"``.
"""

from __future__ import annotations

from typing import Any, Final

MAX_OUTPUT_CHARS: Final = 50_000


def ok_result(output: str, **fields: Any) -> dict[str, Any]:
    return {"output": output, **fields}


def error_result(message: str, **fields: Any) -> dict[str, Any]:
    return {"error": message, **fields}


def truncate_result(result: dict[str, Any], limit: int = MAX_OUTPUT_CHARS) -> dict[str, Any]:
    """Cut ``output`` (or ``error``) to ``limit`` characters, marking what was cut.

    The result is returned as is when nothing is over the limit (no copy).
    """
    for key in ("output", "error"):
        text = result.get(key)
        if isinstance(text, str) and len(text) > limit:
            result = {**result, key: text[:limit], "truncated": True, "original_length": len(text)}
    return result
