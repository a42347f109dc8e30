"""What ended a tunnel attempt: a refused token, a network problem to retry, or a bug.

A refused token (HTTP 401/403 on the upgrade, close code 4401 or 1008) stops
the retries until new credentials arrive; a network problem is retried with
backoff; anything else is a bug, logged with its traceback, and retried too.
"""

from __future__ import annotations

from typing import Final

import trio_websocket

from ..errors import ConnectionLost, TunnelError, Unauthorized
from ..net.errors import describe_close, describe_error

#: WebSocket close codes that mean the token was refused.
UNAUTHORIZED_CLOSE_CODES: Final = frozenset({4401, 1008})


def closed(exc: trio_websocket.ConnectionClosed) -> TunnelError:
    """What a close means: the token refused (close codes 4401, 1008), or a lost connection."""
    reason = exc.reason
    text = describe_close(reason, "the cloud")
    if reason is not None and reason.code in UNAUTHORIZED_CLOSE_CODES:
        return Unauthorized(text)
    return ConnectionLost(text, None if reason is None else reason.code)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def classify(exc: BaseException) -> tuple[str, str]:
    """Sort what ended an attempt: ``("unauthorized" | "retry" | "bug", message)``.

    ``bug`` is an exception no network problem explains: it is logged with its
    traceback, and the tunnel still reconnects (with backoff) rather than die.

    Cancellation and anything that is not an ``Exception`` is re-raised as is.
    """
    if isinstance(exc, BaseExceptionGroup):
        cancelled, rest = exc.split(lambda e: not isinstance(e, Exception))
        if cancelled is not None or rest is None:
            raise exc
        leaves = _leaves(rest)
    elif not isinstance(exc, Exception):
        raise exc
    else:
        leaves = [exc]
    leaves = [closed(e) if isinstance(e, trio_websocket.ConnectionClosed) else e for e in leaves]
    for leaf in leaves:
        if isinstance(leaf, Unauthorized):
            return "unauthorized", str(leaf)
    expected = (
        OSError,
        TunnelError,
        trio_websocket.HandshakeError,
        trio_websocket.ConnectionClosed,
    )
    kind = "retry" if all(isinstance(leaf, expected) for leaf in leaves) else "bug"
    # The reader and the writer may both see the same end: say it once.
    described = dict.fromkeys(describe_error(leaf, peer="the cloud") for leaf in leaves)
    return kind, "; ".join(described)
