"""The update routes: what the daemon knows of updates, and an update on request.

::

    GET  /update      versions (running, installed, latest seen, minimum), last check and
                      error, how this edge updates (method, prefix, or why it cannot)
    POST /update      {"to"?: VERSION, "allowDowngrade"?: bool, "now"?: bool}: verify, drain,
                      install, then the daemon stops (exit code UPDATED) → 200
                      {"status": "installed", "version", "previous", "restarting"}, or
                      {"status": "up to date", ...}; refused or failed (any error of the
                      update: ``Updates.update`` raises nothing else) → 409 {"error"}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

from ..errors import BadRequest, UpdateError
from .body import json_reply, read_json

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

#: The keys a POST /update body may hold.
KEYS: Final = frozenset({"to", "allowDowngrade", "now"})


class UpdateControl(Protocol):
    """The daemon's updates as the control API drives them."""

    def info(self) -> dict[str, Any]:
        """Versions, the last check and its error, how this edge updates."""

    async def update(self, to: str | None, allow_downgrade: bool, now: bool) -> dict[str, Any]:
        """Verify, drain, install (``UpdateError``: refused or failed, whatever the cause)."""


def routes(target: UpdateControl) -> list[Route]:
    """The /update route over ``target``."""
    from starlette.routing import Route

    async def update(request: Request) -> Response:
        if request.method == "GET":
            return json_reply(target.info())
        to, allow_downgrade, now = _parse(await read_json(request))
        try:
            return json_reply(await target.update(to, allow_downgrade, now))
        except UpdateError as exc:
            return json_reply({"error": str(exc)}, status_code=409)

    return [Route("/update", update, methods=["GET", "POST"])]


def _parse(body: dict[str, Any]) -> tuple[str | None, bool, bool]:
    unknown = sorted(set(body) - KEYS)
    if unknown:
        raise BadRequest(f"unknown key {unknown[0]!r} (the body may hold to, allowDowngrade, now)")
    to = body.get("to")
    if to is not None and (not isinstance(to, str) or not to.strip()):
        raise BadRequest('"to" must be a version, as a string')
    flags = []
    for key in ("allowDowngrade", "now"):
        value = body.get(key, False)
        if not isinstance(value, bool):
            raise BadRequest(f'"{key}" must be true or false')
        flags.append(value)
    return to, flags[0], flags[1]
