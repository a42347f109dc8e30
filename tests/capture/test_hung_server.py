"""A sound server that accepts and never answers cannot hold up a capture's stop.

The native open blocks in a thread while libpulse waits for the server; it is
abandoned on cancel and, when it finally returns, closes what it opened.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
import trio

from edge.capture.sources import AudioFormat, NativeSource, parse_source

#: Seconds the silent server holds the connection open at most (old code waited all of it).
HOLD: float = 8.0


async def test_an_open_on_a_silent_server_is_abandoned_on_cancel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "native")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(4)  # connects succeed; nobody ever answers
    monkeypatch.setenv("PULSE_SERVER", f"unix:{path}")
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_close_after, listener, HOLD)
            start = trio.current_time()
            with trio.move_on_after(0.5):
                await NativeSource.open(parse_source("mic"), AudioFormat())
                pytest.fail("the silent server cannot have opened a capture")
            elapsed = trio.current_time() - start
            nursery.cancel_scope.cancel()
    finally:
        listener.close()
    assert elapsed < HOLD / 2, f"cancel took {elapsed:.1f} s"
    # Once the server is gone, the abandoned open returns and leaves nothing behind.
    with trio.fail_after(30):
        while any(t.name.startswith("edge-audio") for t in threading.enumerate()):  # noqa: ASYNC110
            await trio.sleep(0.05)
    assert not [fd for fd in os.listdir("/proc/self/fd") if _is_socket_to(fd, path)]


async def _close_after(listener: socket.socket, seconds: float) -> None:
    await trio.sleep(seconds)
    listener.close()


def _is_socket_to(fd: str, path: str) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == path
    except OSError:
        return False
