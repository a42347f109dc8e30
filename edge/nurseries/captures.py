"""The captures nursery: ``{chat_id: Capture}``, each capture its own child nursery.

No singleton and no "already recording" lock: every start makes an independent
capture; the only rule is that a chat id names one live capture at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from ..capture.capture import Capture, CaptureEnded, CaptureEvent, CaptureRequest, check_chat_id
from ..errors import CaptureConflict, NoSuchCapture

log = logging.getLogger(__name__)


class Captures:
    """Handle on the captures nursery; made by ``serve_captures``."""

    def __init__(
        self,
        nursery: trio.Nursery,
        on_event: Callable[[CaptureEvent], None],
        uplink_options: dict[str, Any] | None = None,
    ) -> None:
        self._nursery = nursery
        self._on_event = on_event
        self._uplink_options = uplink_options
        self._live: dict[str, Capture | None] = {}  # None: starting

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, chat_id: object) -> bool:
        return chat_id in self._live

    async def start(self, request: CaptureRequest) -> Capture:
        """Start a capture.

        Raises:
            CaptureConflict: the chat id already names a live capture.
            CaptureError: bad chat id, or the source or recording cannot be opened.
        """
        chat_id = check_chat_id(request.chat_id)
        if chat_id in self._live:
            raise CaptureConflict(f"chat {chat_id!r} is already recording: stop it first")
        self._live[chat_id] = None
        capture = Capture(
            request, on_event=partial(self._event, chat_id), uplink_options=self._uplink_options
        )
        try:
            started: Capture = await self._nursery.start(capture.run)
        except BaseException:
            self._live.pop(chat_id, None)
            raise
        if capture.running:
            self._live[chat_id] = started
        return started

    def _event(self, chat_id: str, event: CaptureEvent) -> None:
        if isinstance(event, CaptureEnded) and chat_id in self._live:
            self._live.pop(chat_id)
        self._on_event(event)

    def get(self, chat_id: str) -> Capture:
        capture = self._live.get(chat_id)
        if capture is None:
            raise NoSuchCapture(f"no capture is recording chat {chat_id!r}")
        return capture

    async def stop(self, chat_id: str) -> dict[str, Any]:
        """Stop one capture and return its summary."""
        return await self.get(chat_id).stop()

    async def stop_all(self) -> list[dict[str, Any]]:
        """Stop every capture at once and return their summaries."""
        captures = [c for c in self._live.values() if c is not None]
        summaries: dict[str, dict[str, Any]] = {}

        async def stop_one(capture: Capture) -> None:
            summaries[capture.chat_id] = await capture.stop()

        async with trio.open_nursery() as nursery:
            for capture in captures:
                nursery.start_soon(stop_one, capture)
        return [summaries[c.chat_id] for c in captures]

    def status(self) -> list[dict[str, Any]]:
        return [c.status() for c in self._live.values() if c is not None]


async def serve_captures(
    on_event: Callable[[CaptureEvent], None],
    *,
    uplink_options: dict[str, Any] | None = None,
    task_status: trio.TaskStatus[Captures] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the captures nursery until cancelled; ``nursery.start`` gives its handle."""
    async with trio.open_nursery() as nursery:
        task_status.started(Captures(nursery, on_event, uplink_options))
        await trio.sleep_forever()
