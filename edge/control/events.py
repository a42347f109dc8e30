"""The event stream: the daemon's events as server-sent events.

::

    GET  /record/events     server-sent events: transcripts, captures started and ended
    GET  /events            the same stream (MCP server status changes included)

Each event is one ``event: TYPE`` / ``data: JSON`` frame
(https://html.spec.whatwg.org/multipage/server-sent-events.html); an idle
stream gets a comment every ``EVENT_KEEPALIVE`` seconds, so proxies and
browsers keep it open.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from ..events import EventHub

#: Seconds between keep-alive comments on an idle event stream.
EVENT_KEEPALIVE: Final = 15.0


def routes(hub: EventHub) -> list[Route]:
    """GET /record/events and GET /events, both streaming ``hub``."""
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    async def events(request: Request) -> StreamingResponse:
        return StreamingResponse(
            _frames(hub),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    return [
        Route("/record/events", events, methods=["GET"]),
        Route("/events", events, methods=["GET"]),
    ]


async def _frames(hub: EventHub) -> AsyncIterator[bytes]:
    """The stream's frames: an opening comment, then events and keep-alive comments."""
    with hub.subscribe() as sub:
        yield b": edge events\n\n"
        while True:
            with trio.move_on_after(EVENT_KEEPALIVE):
                event = await sub.receive.receive()
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
                continue
            yield b": keep-alive\n\n"
