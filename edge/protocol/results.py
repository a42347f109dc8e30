"""Tool results as the cloud sees them.

A result is a JSON object with ``"output"`` (a string) on success or ``"error"``
(a string) on failure, plus tool-specific fields. An output longer than
``MAX_OUTPUT_CHARS`` is cut and marked twice: in the text itself, whose last line
becomes ``… [truncated: N characters in all]`` (counted inside the limit, so a
model that reads only ``output`` knows it was cut), and with the side fields
``"truncated": true`` and ``"original_length": N``.
"""

from __future__ import annotations

from typing import Any, Final

MAX_OUTPUT_CHARS: Final = 50_000


def ok_result(output: str, **fields: Any) -> dict[str, Any]:
    return {"output": output, **fields}


def error_result(message: str, **fields: Any) -> dict[str, Any]:
    return {"error": message, **fields}


def truncation_marker(length: int) -> str:
    """The line that ends a cut text: ``… [truncated: LENGTH characters in all]``."""
    return f"\n… [truncated: {length} characters in all]"


def truncate_result(result: dict[str, Any], limit: int = MAX_OUTPUT_CHARS) -> dict[str, Any]:
    """Cut ``output`` (or ``error``) to ``limit`` characters, marking what was cut.

    The marker line (``truncation_marker``) is part of the ``limit`` characters;
    a limit too small to hold it cuts the text alone. The result is returned as
    is when nothing is over the limit (no copy).
    """
    for key in ("output", "error"):
        text = result.get(key)
        if isinstance(text, str) and len(text) > limit:
            marker = truncation_marker(len(text))
            cut = text[: limit - len(marker)] + marker if len(marker) < limit else text[:limit]
            result = {**result, key: cut, "truncated": True, "original_length": len(text)}
    return result
