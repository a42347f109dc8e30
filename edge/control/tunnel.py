"""The tunnel's routes: its status, activation with credentials, disconnection.

::

    GET  /tunnel/status     the tunnel's state (never the token)
    POST /tunnel/activate   {"jwt": ..., "tunnelUrl": ...}: connect with these credentials
    POST /tunnel/disconnect
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ..errors import BadRequest
from .body import json_reply, read_json

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route


class TunnelControl(Protocol):
    """The tunnel as the control API drives it."""

    def info(self) -> dict[str, Any]:
        """The body of GET /tunnel/status (never the token)."""

    def activate(self, jwt: str, url: str) -> None:
        """(Re)connect with these credentials; ValueError for an unusable URL."""

    def disconnect(self) -> None:
        """Drop the tunnel."""


def routes(target: TunnelControl) -> list[Route]:
    """The /tunnel/* routes over ``target``."""
    from starlette.routing import Route

    async def status(request: Request) -> Response:
        return json_reply(target.info())

    async def activate(request: Request) -> Response:
        jwt, url = _credentials(await read_json(request))
        try:
            target.activate(jwt, url)
        except ValueError as exc:
            raise BadRequest(f'"tunnelUrl": {exc}') from None
        # "ok" is for pages written against the older API, which check it.
        return json_reply({"ok": True, "status": "connecting", "tunnelUrl": url}, status_code=202)

    async def disconnect(request: Request) -> Response:
        target.disconnect()
        return json_reply({"status": "disconnected"})

    return [
        Route("/tunnel/status", status, methods=["GET"]),
        Route("/tunnel/activate", activate, methods=["POST"]),
        Route("/tunnel/disconnect", disconnect, methods=["POST"]),
    ]


def _credentials(data: dict[str, Any]) -> tuple[str, str]:
    """The token (stripped) and the ws:// or wss:// URL of an activation body."""
    jwt = data.get("jwt")
    url = data.get("tunnelUrl")
    if not isinstance(jwt, str) or not jwt.strip():
        raise BadRequest('"jwt" is missing or not a non-empty string')
    if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
        raise BadRequest('"tunnelUrl" is missing or not a ws:// or wss:// URL')
    return jwt.strip(), url
