"""Reading requests (JSON bodies, size-limited, objects only; query parameters) and JSON replies.

The readers raise ``BadRequest``, which the app answers with 400 and the
message; ``json_reply`` encodes any reply, whatever text it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Final

from ..errors import BadRequest
from ..protocol import encode
from ..protocol.strict import loads as strict_loads

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

#: Request bodies larger than this are refused (bytes).
MAX_BODY: Final = 64 * 1024


async def read_json(request: Request, limit: int = MAX_BODY) -> dict[str, Any]:
    """The request's body as a JSON object.

    Raises:
        BadRequest: the body is over ``limit`` bytes, not JSON, or not an object.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadRequest(f"body is over {limit} bytes")
    chunks_in: list[bytes] = []
    size = 0
    async with aclosing(request.stream()) as chunks:
        async for chunk in chunks:
            chunks_in.append(chunk)
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"body is over {limit} bytes")
    body = b"".join(chunks_in)
    try:
        data = strict_loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


def query_seconds(request: Request, name: str, default: float, *, most: float) -> float:
    """The query parameter ``name`` as seconds in (0, ``most``], ``default`` when absent.

    Raises:
        BadRequest: the parameter is not a number, or out of range.
    """
    raw = request.query_params.get(name)
    try:
        seconds = default if raw is None else float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number of seconds") from None
    if not 0 < seconds <= most:
        raise BadRequest(f"{name} must be between 0 and {most:g} seconds")
    return seconds


def json_reply(content: Mapping[str, Any], status_code: int = 200) -> Response:
    """``content`` as a JSON response that always encodes.

    Encoded like a tunnel frame (``edge.protocol.encode``): a lone surrogate, as
    in a file name that is not UTF-8, is escaped rather than failing the reply.
    """
    from starlette.responses import Response

    return Response(encode(content), status_code=status_code, media_type="application/json")
