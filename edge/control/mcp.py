"""The MCP routes: every server's status, and a timed test of one server.

::

    GET  /mcp/servers       every MCP server: status, metrics, per-tool figures
    POST /mcp/servers/NAME/test   connect on a fresh connection, list tools, time it
                                  (?timeout=SECONDS, default 10)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

from .body import json_reply, query_seconds

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

    def info(self) -> list[dict[str, Any]]:
        """Every server's config (no secrets), status and metrics."""

    async def test(self, name: str, within: float) -> dict[str, Any]:
        """Connect to server ``name`` afresh and list its tools within ``within`` seconds.

        The report has ``ok``; KeyError for an unknown name.
        """


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

    return [
        Route("/mcp/servers", servers, methods=["GET"]),
        Route("/mcp/servers/{name}/test", test, methods=["POST"]),
    ]
