"""The daemon's own lifecycle: a clean stop asked for over the control API (``edge stop``).

::

    POST /stop      202 {"status": "stopping"}, then the daemon stops as on SIGTERM

The route needs the local key (``edge.control.key``): neither a web page nor
another user of this machine may stop the daemon. The reply goes out before the
stop begins (the stop is the response's background task, run once the body is
sent), so the caller always learns that it was accepted; it then watches the
port close.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .body import json_reply
from .key import require_key

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from .key import LocalKey


def routes(stop: Callable[[], None], key: LocalKey | None) -> list[Route]:
    """``POST /stop`` over ``stop`` (starts the daemon's clean stop, returns at once),
    for callers that present ``key``."""
    from starlette.background import BackgroundTask
    from starlette.routing import Route

    async def stop_after_reply() -> None:
        stop()

    async def stop_route(request: Request) -> Response:
        require_key(request.headers, key)
        reply = json_reply({"status": "stopping"}, status_code=202)
        reply.background = BackgroundTask(stop_after_reply)
        return reply

    return [Route("/stop", stop_route, methods=["POST"])]
