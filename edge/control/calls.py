"""The calls route: the tool calls in flight and the last ones finished.

::

    GET  /calls             {"inFlight": [...], "recent": [...], "counts": {...}}, newest
                            first; ?limit=N caps each list (1 to KEEP_RECENT)

An entry is ``{"id", "tool", "source", "started", "seconds"}`` (``started``: local
time with its UTC offset; ``seconds``: so far, for a call in flight), and a finished
one adds ``"outcome"`` (``ok``, ``error``, ``timeout``, ``cancelled``, ``refused``),
``"chars"`` (its output's size) and ``"error"`` (edge's words for why it did not
succeed, else ``null``). Never a call's args or output (``edge.tools.audit``).
The same entries come as ``call_started`` and ``call_finished`` events on GET /events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..errors import BadRequest
from ..tools.audit import KEEP_RECENT
from .body import json_reply

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route


class CallsControl(Protocol):
    """The daemon's record of tool calls (``edge.tools.audit.CallLog``)."""

    def snapshot(self, limit: int | None = None) -> dict[str, Any]:
        """The calls in flight and the last finished, newest first, ``limit`` of each."""


def routes(target: CallsControl) -> list[Route]:
    """GET /calls over ``target``."""
    from starlette.routing import Route

    async def calls(request: Request) -> Response:
        return json_reply(target.snapshot(_limit(request)))

    return [Route("/calls", calls, methods=["GET"])]


def _limit(request: Request) -> int | None:
    """``?limit=N`` (1 to ``KEEP_RECENT``), ``None`` when absent.

    Raises:
        BadRequest: it is not a whole number in range.
    """
    raw = request.query_params.get("limit")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= KEEP_RECENT:
        raise BadRequest(f"limit must be a whole number from 1 to {KEEP_RECENT}")
    return int(raw)
