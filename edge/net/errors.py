"""One line of text for whatever ended a connection or a request.

The tunnel, the ASR uplinks and the MCP sessions all report why a link went
down (in statuses, logs and error results); they share this one description so
the same failure reads the same everywhere. Callers with failures of their own
kind (an MCP error, a command that is not there) handle those first and hand
the rest to ``describe_error``.
"""

from __future__ import annotations

from typing import Final

import trio
import trio_websocket

from ..errors import EdgeError, first_leaf

#: Characters of an exception's text kept in a description.
MAX_CHARS: Final = 300


def describe_close(reason: trio_websocket.CloseReason | None, peer: str = "the peer") -> str:
    """What a WebSocket close says: ``the cloud closed the connection (1011: why)``."""
    if reason is None:
        return "the connection closed"
    text = f"{peer} closed the connection ({reason.code}"
    return text + (f": {reason.reason})" if reason.reason else ")")


def describe_error(exc: BaseException, *, peer: str = "the peer") -> str:
    """A one-line reason for ``exc`` (the first leaf of an exception group).

    Args:
        exc: what ended the connection or the request.
        peer: how to name the other side in the text (``"the cloud"``).
    """
    exc = first_leaf(exc)
    final = trio_websocket.ConnectionRejected | trio_websocket.ConnectionTimeout
    while (
        isinstance(exc, trio_websocket.HandshakeError)
        and not isinstance(exc, final)
        and exc.__cause__ is not None
    ):
        exc = first_leaf(exc.__cause__)
    if isinstance(exc, trio_websocket.ConnectionRejected):
        return f"{peer} rejected the WebSocket upgrade with HTTP {exc.status_code}"
    if isinstance(exc, trio_websocket.ConnectionTimeout | trio.TooSlowError):
        return "no answer in time"
    if isinstance(exc, trio_websocket.ConnectionClosed):
        return describe_close(exc.reason, peer)
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return f"cannot connect: {reason}" if isinstance(exc, ConnectionError) else reason
    lines = str(exc).strip().splitlines()
    text = lines[0][:MAX_CHARS] if lines else ""
    if isinstance(exc, EdgeError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
