"""Blocking opens in a worker thread that their caller may give up on.

``open_abandonable`` runs an open (a native capture connecting to a sound
server that may never answer) in a thread started with ``abandon_on_cancel``,
so a stop never waits for it, and makes sure what it opens is closed, whichever
side comes second.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import trio


class _Opening:
    """An open running in a thread that its caller may give up on.

    Whichever side comes second closes the handle: the thread, when the caller
    has gone; the caller, when the handle arrived just as it was cancelled.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.abandoned = False
        self.handle: Any = None


async def open_abandonable(
    open_fn: Callable[[], Any], close_fn: Callable[[Any], None], null: Any
) -> Any:
    """``open_fn()`` in a thread, abandoned on cancel without leaking what it opens."""
    opening = _Opening()

    def run() -> Any:
        handle = open_fn()
        with opening.lock:
            if not opening.abandoned:
                opening.handle = handle
                return handle
        if handle != null:
            close_fn(handle)
        return null

    try:
        return await trio.to_thread.run_sync(run, abandon_on_cancel=True)
    except trio.Cancelled:
        with opening.lock:
            opening.abandoned = True
            late, opening.handle = opening.handle, None
        if late is not None and late != null:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(close_fn, late)
        raise
