"""The capture routes: start, stop and list captures (their events are in ``events``).

::

    POST /record/start      {"chatId", "source", "asr"?, "sampleRate"?, "channels"?, "format"?}
    POST /record/stop       ?chatId=ID stops one capture; without it, all
    GET  /record/status     every live capture

Capture errors are answered by the app: ``NoSuchCapture`` with 404,
``CaptureConflict`` with 409, any other ``CaptureError`` with 400.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol

from ..errors import BadRequest
from .body import json_reply, read_json

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

#: Optional fields of a start body: (JSON key, keyword of ``record_start``, type).
START_OPTIONS: Final[tuple[tuple[str, str, type], ...]] = (
    ("sampleRate", "sample_rate", int),
    ("channels", "channels", int),
    ("format", "container", str),
)


class RecordControl(Protocol):
    """The captures as the control API drives them."""

    async def record_start(
        self,
        chat_id: object,
        source: str,
        *,
        asr: str | bool | None = None,
        sample_rate: int = 16000,
        channels: int = 1,
        container: str = "flac",
    ) -> dict[str, Any]:
        """Start a capture for ``chat_id`` and return its status; CaptureError if it cannot."""

    async def record_stop(self, chat_id: str | None) -> list[dict[str, Any]]:
        """Stop the capture of ``chat_id`` (every capture for None) and return the summaries."""

    def record_status(self) -> list[dict[str, Any]]:
        """Every live capture's status."""


def routes(target: RecordControl) -> list[Route]:
    """The /record/* routes over ``target``, the event stream excepted."""
    from starlette.routing import Route

    async def start(request: Request) -> Response:
        data = await read_json(request)
        source, asr, options = _start_request(data)
        status = await target.record_start(data.get("chatId"), source, asr=asr, **options)
        return json_reply(status, status_code=201)

    async def stop(request: Request) -> Response:
        chat_id = request.query_params.get("chatId")
        return json_reply({"stopped": await target.record_stop(chat_id)})

    async def status(request: Request) -> Response:
        return json_reply({"captures": target.record_status()})

    return [
        Route("/record/start", start, methods=["POST"]),
        Route("/record/stop", stop, methods=["POST"]),
        Route("/record/status", status, methods=["GET"]),
    ]


def _start_request(data: dict[str, Any]) -> tuple[str, str | bool | None, dict[str, Any]]:
    """The source, ASR choice and keyword options of a start body."""
    options: dict[str, Any] = {}
    for key, name, kind in START_OPTIONS:
        if key in data:
            value = data[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise BadRequest(f'"{key}" must be a {kind.__name__}')
            options[name] = value
    asr = data.get("asr")
    if asr is not None and asr is not False and not isinstance(asr, str):
        raise BadRequest('"asr" must be a ws:// or wss:// URL, or false')
    source = data.get("source")
    if not isinstance(source, str):
        raise BadRequest('"source" is missing or not a string (mic, system, tone:FREQ, ...)')
    return source, asr, options
