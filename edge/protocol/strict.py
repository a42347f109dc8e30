"""JSON as the wire carries it: decoding that refuses what Python's decoder takes beyond
JSON (``NaN``, ``Infinity``, ``-Infinity``), and a check that a value encodes as JSON."""

from __future__ import annotations

import json
from typing import Any


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


#: One decoder for every call (``json.loads`` with an argument builds one each time).
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def loads(data: str | bytes) -> Any:
    """``json.loads`` that refuses ``NaN`` and the infinities.

    Raises:
        ValueError: ``data`` is not JSON (``json.JSONDecodeError`` included).
        RecursionError: it nests too deep.
    """
    if not isinstance(data, str):  # bytes: as json.loads reads them
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    return _DECODER.decode(data)


def json_problem(value: Any) -> str | None:
    """Why ``value`` is no plain JSON value (bytes, a set, a NaN ...), or ``None``."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return str(exc)
    return None
