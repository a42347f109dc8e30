"""The control API as one ASGI app, and the server that serves it.

``build_app`` puts the guard (``edge.control.guard``) in front of every route
module's routes and answers edge's errors as JSON: ``BadRequest`` with 400,
capture errors with 400, 404 or 409, HTTP errors (unknown routes, wrong
methods, unknown MCP servers) with their status. ``serve_control`` serves it
with hypercorn on trio.
"""

from __future__ import annotations

import errno
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import trio

from ..errors import (
    BadRequest,
    CaptureConflict,
    CaptureError,
    ConfigError,
    NoSuchCapture,
    first_leaf,
)
from . import ask, calls, dashboard, events, lifecycle, mcp, plugins, record, tools, tunnel, update
from .agents import routes as agents_routes
from .body import json_reply
from .guard import ASGIApp, guard_middleware
from .schedule import routes as schedule_routes

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ..events import EventHub
    from .agents import AgentsControl
    from .ask import AskControl
    from .calls import CallsControl
    from .key import LocalKey
    from .mcp import McpControl
    from .plugins import PluginsControl
    from .record import RecordControl
    from .schedule import ScheduleControl
    from .tools import ToolsControl
    from .tunnel import TunnelControl
    from .update import UpdateControl

log = logging.getLogger(__name__)

#: Seconds open HTTP requests get to finish when the daemon stops.
GRACEFUL_TIMEOUT: Final = 0.3


@dataclass(frozen=True, slots=True)
class ControlTargets:
    """What the control API drives, one small protocol per route area."""

    #: GET /health: version, uptime, tunnel status, effective tool count.
    health: Callable[[], dict[str, Any]]
    #: /tunnel/*.
    tunnel: TunnelControl
    #: /record/* (not the event stream).
    record: RecordControl
    #: /mcp/*.
    mcp: McpControl
    #: /tools/*.
    tools: ToolsControl
    #: GET /events and GET /record/events.
    events: EventHub
    #: /plugins/* (``None``: no plugin nursery, the routes answer 404).
    plugins: PluginsControl | None = None
    #: POST /ask: questions to the cloud's model gateway (``None``: 404).
    ask: AskControl | None = None
    #: GET and POST /update: the daemon's updates (``None``: 404).
    update: UpdateControl | None = None
    #: This run's local key, which the routes only this machine's user may call need
    #: (``edge.control.key``; ``None``: those routes refuse every request).
    key: LocalKey | None = None
    #: POST /stop: starts the daemon's clean stop and returns at once (``None``: 404).
    stop: Callable[[], None] | None = None
    #: GET /calls: the tool calls in flight and the last finished (``None``: 404).
    calls: CallsControl | None = None
    #: POST /tools/call: one tool call under the local policy alone, on the daemon's
    #: workers; needs the local key (``None``: 404).
    call_tool: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]] | None = None
    #: /schedule: the scheduler's tasks and history; state changes need the local key
    #: (``None``: 404).
    schedule: ScheduleControl | None = None
    #: The local A2A endpoint, its agent card and GET /agents (``None``: 404).
    agents: AgentsControl | None = None


def build_app(
    targets: ControlTargets, allowed_origins: Iterable[str] = (), *, csrf_token: str | None = None
) -> ASGIApp:
    """The control API as an ASGI app: the guard, CORS, then the routes.

    Args:
        targets: what the routes drive.
        allowed_origins: the browser origins (``scheme://host[:port]``) that may
            call the API; requests from any other Origin get 403.
        csrf_token: this run's token for the dashboard's state changes (in the
            page; the guard checks it); ``None``: a fresh one, known only to the app.

    Returns:
        The app, for ``serve_control``.
    """
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    async def health(request: Request) -> Response:
        return json_reply(targets.health())

    if csrf_token is None:
        csrf_token = secrets.token_urlsafe(32)

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            *tunnel.routes(targets.tunnel),
            *record.routes(targets.record),
            *events.routes(targets.events),
            *mcp.routes(targets.mcp),
            *tools.routes(targets.tools, targets.call_tool, targets.key),
            *(plugins.routes(targets.plugins) if targets.plugins is not None else []),
            *(ask.routes(targets.ask) if targets.ask is not None else []),
            *(update.routes(targets.update) if targets.update is not None else []),
            *(calls.routes(targets.calls) if targets.calls is not None else []),
            *(lifecycle.routes(targets.stop, targets.key) if targets.stop is not None else []),
            *(schedule_routes(targets.schedule, targets.key) if targets.schedule else []),
            *(agents_routes(targets.agents) if targets.agents is not None else []),
            *dashboard.routes(csrf_token),
        ],
        middleware=guard_middleware(allowed_origins, csrf_token),
        exception_handlers={
            BadRequest: _bad_request,
            CaptureError: _capture_error,
            HTTPException: _http_error,
        },
    )


async def _bad_request(request: Request, exc: Exception) -> Response:
    """400 with the message."""

    return json_reply({"error": str(exc)}, status_code=400)


async def _capture_error(request: Request, exc: Exception) -> Response:
    """404 for an unknown chat id, 409 for one already recording, else 400."""

    status = 400
    if isinstance(exc, NoSuchCapture):
        status = 404
    elif isinstance(exc, CaptureConflict):
        status = 409
    return json_reply({"error": str(exc)}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    """The HTTP error's status, with its detail as the message."""
    from starlette.exceptions import HTTPException

    assert isinstance(exc, HTTPException)
    return json_reply({"error": exc.detail}, status_code=exc.status_code)


async def serve_control(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; ``nursery.start`` gives its URL.

    Raises:
        ConfigError: the address cannot be bound (in use, not local, ...).
    """
    import hypercorn
    import hypercorn.trio

    config = hypercorn.Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    http_log = logging.getLogger("edge.control.http")
    http_log.setLevel(max(logging.WARNING, log.getEffectiveLevel()))
    config.errorlog = http_log
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.include_server_header = False
    bound = False
    try:
        async with trio.open_nursery() as nursery:
            serve = partial(hypercorn.trio.serve, app, config)  # type: ignore[arg-type]
            binds = await nursery.start(serve)
            bound = True
            task_status.started(binds[0])
    except* OSError as group:
        if bound:  # a failure while serving is not a bind problem
            raise
        raise ConfigError(_bind_problem(host, port, group.exceptions[0])) from None


def _bind_problem(host: str, port: int, exc: BaseException) -> str:
    """What to tell the user when ``host:port`` cannot be served."""
    exc = first_leaf(exc)
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return (
            f"cannot serve the control API on {host}:{port}: the address is in use "
            "(is edge already running? try --control HOST:PORT or --no-control)"
        )
    return f"cannot serve the control API on {host}:{port}: {exc}"
