"""The local key: a per-run secret for the routes only this machine's user may call.

Most of the control API is what the cloud's web page drives, behind the
Host/Origin guard. A few routes do more than that page ever needs: they stop
the daemon, or run a tool under the local policy alone, without the cloud's
approval (``edge stop``, ``edge tools call``). Any local process can reach
127.0.0.1, other users' included; on Linux the guard already refuses other
users' processes (``edge.control.peer``), and the key is a second lock there and
the only one where the peer's owner cannot be found (macOS): proof that the
caller can read this user's state directory. It is a random value made at each
start and written there (``control-PORT.key``, mode 0600), sent back in the
``X-Edge-Key`` header. The CLI reads it from the same state directory; the
dashboard page never has it, nor does anything a browser loads.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Final

from ..fs import write_private

#: The request header that carries the key.
KEY_HEADER: Final = "x-edge-key"
#: What a route that needs the key answers without it.
KEY_REFUSED: Final = (
    "this route needs the local key: send the X-Edge-Key header with the contents of "
    "control-PORT.key in edge's state directory (the edge CLI does)"
)


def key_file(state_dir: Path, port: int) -> Path:
    """Where the daemon serving the control API on ``port`` keeps its key."""
    return state_dir / f"control-{port}.key"


class LocalKey:
    """One run's key; ``matches`` checks what a request presents, in constant time."""

    def __init__(self, value: str | None = None) -> None:
        self._value = value if value is not None else secrets.token_urlsafe(32)
        self._path: Path | None = None

    def __repr__(self) -> str:
        return "LocalKey('***')"

    def matches(self, presented: str | None) -> bool:
        """Whether ``presented`` (a header value, or ``None`` when absent) is the key."""
        if not presented:
            return False
        return hmac.compare_digest(presented.strip().encode(), self._value.encode())

    def header(self) -> dict[str, str]:
        """The header a client sends (tests and the in-process CLI helpers)."""
        return {KEY_HEADER: self._value}

    def write(self, state_dir: Path, port: int) -> Path:
        """Write the key where the CLI looks for it (0600, atomically); the file's path."""
        path = key_file(state_dir, port)
        write_private(path, self._value + "\n", durable=False)
        self._path = path
        return path

    def remove(self) -> None:
        """Remove the file ``write`` made, if it still holds this key (a newer run's stays)."""
        if self._path is None:
            return
        try:
            if self._path.read_text(encoding="utf-8").strip() == self._value:
                self._path.unlink()
        except OSError:
            pass
        self._path = None


def read_key(state_dir: Path | None, port: int) -> str | None:
    """The key of the daemon on ``port`` from ``state_dir``, or ``None`` when there is none."""
    if state_dir is None:
        return None
    try:
        text = key_file(state_dir, port).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


def require_key(headers: object, key: LocalKey | None) -> None:
    """Refuse (403) a request whose ``X-Edge-Key`` header is not ``key``.

    ``headers`` is the request's headers (a mapping with ``get``); with no key at
    all (a daemon without a state directory) every such request is refused.

    Raises:
        starlette.exceptions.HTTPException: 403 with ``KEY_REFUSED``.
    """
    from starlette.exceptions import HTTPException

    presented = headers.get(KEY_HEADER) if hasattr(headers, "get") else None
    if key is None or not key.matches(presented if isinstance(presented, str) else None):
        raise HTTPException(403, KEY_REFUSED)
