"""The MCP routes: every server's status, a timed test of one server, and a reload.

::

    GET  /mcp/servers       every MCP server: status, metrics, per-tool figures
    POST /mcp/servers/NAME/test   connect on a fresh connection, list tools, time it
                                  (?timeout=SECONDS, default 10)
    POST /mcp/reload        {"file"?: PATH}: read mcp.json again, start, stop and restart
                            what changed (the CLI calls it after ``edge mcp add/remove``)
    POST /mcp/refresh       ?server=NAME (one) or nothing (all): list the tools again now,
                            past the cache (``edge mcp refresh``)

A reload of a file that does not load changes nothing and answers 400 with the
reason; naming a file the daemon does not read answers 409 and reloads nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..errors import BadRequest, ConfigError
from .body import json_reply, query_seconds, read_json

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

#: Seconds POST /mcp/servers/NAME/test waits for a server unless ?timeout= says otherwise.
MCP_TEST_TIMEOUT: Final = 10.0
#: The longest ?timeout= a test accepts (seconds).
MCP_TEST_MAX_TIMEOUT: Final = 120.0


class McpControl(Protocol):
    """The MCP servers as the control API drives them."""

    #: The servers file the daemon follows (``None``: none).
    path: Path | None

    def info(self) -> list[dict[str, Any]]:
        """Every server's config (no secrets), status and metrics."""

    async def test(self, name: str, within: float) -> dict[str, Any]:
        """Connect to server ``name`` afresh and list its tools within ``within`` seconds.

        The report has ``ok``; KeyError for an unknown name.
        """

    async def refresh(self, name: str | None, within: float) -> list[dict[str, Any]]:
        """List the tools of server ``name`` (every server for ``None``) again now, within
        ``within`` seconds: one ``{"name", "ok", "tools"|"error"}`` each; KeyError for an
        unknown name."""

    async def reload(self) -> dict[str, Any]:
        """Read the servers file again and apply the difference: ``{"ok": True, "file",
        "added", "removed", "restarted", "servers"}``; ``ConfigError`` when it does not
        load (the running servers are kept)."""


def routes(target: McpControl) -> list[Route]:
    """The /mcp/* routes over ``target``."""
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    async def servers(request: Request) -> Response:
        return json_reply({"servers": target.info()})

    async def test(request: Request) -> Response:
        name = request.path_params["name"]
        within = query_seconds(request, "timeout", MCP_TEST_TIMEOUT, most=MCP_TEST_MAX_TIMEOUT)
        try:
            report = await target.test(name, within)
        except KeyError:
            raise HTTPException(404, f"no MCP server named {name!r}") from None
        return json_reply(report, status_code=200 if report["ok"] else 502)

    async def reload(request: Request) -> Response:
        data = await _optional_json(request)
        file = data.get("file")
        if file is not None and not (isinstance(file, str) and file):
            raise BadRequest('"file" must be the path of a servers file')
        ours = None if target.path is None else str(target.path)
        if file is not None and not _same_file(file, target.path):
            return json_reply(
                {"error": f"the running edge reads {ours or 'no servers file'}, not {file}",
                 "file": ours},
                status_code=409,
            )  # fmt: skip
        try:
            report = await target.reload()
        except ConfigError as exc:
            return json_reply({"ok": False, "error": str(exc), "file": ours}, status_code=400)
        return json_reply(report)

    async def refresh(request: Request) -> Response:
        name = request.query_params.get("server") or None
        within = query_seconds(request, "timeout", MCP_TEST_TIMEOUT, most=MCP_TEST_MAX_TIMEOUT)
        try:
            servers = await target.refresh(name, within)
        except KeyError:
            raise HTTPException(404, f"no MCP server named {name!r}") from None
        ok = all(s["ok"] for s in servers)
        return json_reply({"ok": ok, "servers": servers}, status_code=200 if ok else 502)

    return [
        Route("/mcp/servers", servers, methods=["GET"]),
        Route("/mcp/refresh", refresh, methods=["POST"]),
        Route("/mcp/servers/{name}/test", test, methods=["POST"]),
        Route("/mcp/reload", reload, methods=["POST"]),
    ]


async def _optional_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object; none at all (``curl -X POST``) is ``{}``."""
    headers = request.headers
    if headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers:
        return {}
    return await read_json(request)


def _same_file(given: str, ours: Path | None) -> bool:
    """Whether ``given`` names the servers file ``ours`` (after ``~`` and symlinks)."""
    if ours is None:
        return False
    try:
        return os.path.realpath(os.path.expanduser(given)) == os.path.realpath(ours)
    except (OSError, ValueError):
        return False
