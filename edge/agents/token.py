"""The A2A bearer token: the secret a local A2A client presents to edge's A2A endpoint.

The agent card (``GET /.well-known/agent-card.json``) may be read by anything
the control API's guard lets through; the tasks behind ``POST /a2a`` need more,
since they run tools on this machine. A client proves it may use them with
``Authorization: Bearer TOKEN``, where the token is a random value edge makes
once (``secrets.token_urlsafe(32)``) and keeps in the state directory as
``a2a.token``, mode 0600: readable by this machine's user alone, the same
across restarts, so a client configured with it keeps working. ``edge agents
token`` prints it (and makes it when there is none yet, with the same
function as the daemon). The token is never logged nor passed to tools.

Creating is atomic and happens once: the new value is written to a private
temporary file and hard-linked into place, which fails if another process
(a daemon, an ``edge agents token``) made the file first; then that one's value
is used.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Final

from ..fs import PRIVATE_MODE, write_private

log = logging.getLogger(__name__)

#: The token's file in the state directory.
TOKEN_FILE: Final = "a2a.token"
#: Random bytes in a new token (``secrets.token_urlsafe``: 43 characters).
TOKEN_BYTES: Final = 32
#: The scheme of the ``Authorization`` header that carries the token.
BEARER: Final = "bearer"
#: What a token in the file may be: a bearer token's characters (RFC 6750 ``b64token``),
#: 16 to 1024 of them. A file with anything else (made by hand) gets a new token.
VALID_TOKEN: Final = re.compile(r"[A-Za-z0-9\-._~+/]{16,1024}=*")


def token_file(state_dir: Path) -> Path:
    """Where the token of the daemon with ``state_dir`` is kept."""
    return state_dir / TOKEN_FILE


def read_token(state_dir: Path | None) -> str | None:
    """The token kept in ``state_dir``, or ``None`` when there is none (or no directory)."""
    if state_dir is None:
        return None
    try:
        text = token_file(state_dir).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if valid_token(text) else None


def valid_token(text: str) -> bool:
    """Whether ``text`` is a token edge serves with (``VALID_TOKEN``)."""
    return VALID_TOKEN.fullmatch(text) is not None


def load_token(state_dir: Path) -> str:
    """The token kept in ``state_dir``; made there first (0600) if there is none yet.

    A file whose mode lets other users read it is made 0600 again; an empty one,
    or one whose contents are not a token (``VALID_TOKEN``: hand-written with
    other characters, say), gets a new token, and the log says so (never what
    the file held).

    Raises:
        OSError: the state directory or the file cannot be read or written.
    """
    path = token_file(state_dir)
    existing = _read_private(path)
    if existing and valid_token(existing):
        return existing
    value = secrets.token_urlsafe(TOKEN_BYTES)
    if existing is not None:
        if existing:
            log.warning(
                "the A2A token in %s is not one edge can use (16 to 1024 of A-Z a-z 0-9 "
                "- . _ ~ + /): a new token replaces it (edge agents token prints it)",
                path,
            )
        write_private(path, value + "\n")
    elif not _create(path, value):  # another process made it first: its value holds
        made = _read_private(path)
        return made if made and valid_token(made) else value
    return value


def _read_private(path: Path) -> str | None:
    """The stripped contents of ``path`` (made 0600 if it was not), ``None`` when absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, PRIVATE_MODE)
        return f.read().decode("utf-8", errors="replace").strip()


def _create(path: Path, value: str) -> bool:
    """Put ``value`` at ``path`` unless a file is there already; whether it was put."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.new")
    write_private(tmp, value + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value is ``Bearer TOKEN`` (constant-time compare)."""
    if not authorization or not token:
        return False
    scheme, _, presented = authorization.strip().partition(" ")
    if scheme.lower() != BEARER:
        return False
    given = presented.strip().encode("utf-8", "surrogatepass")
    return hmac.compare_digest(given, token.encode("utf-8", "surrogatepass"))


def serving_token(state_dir: Path | None) -> str:
    """The token a daemon with ``state_dir`` serves with: ``load_token``'s, or, without a
    directory or when it cannot be kept there, one for this run only (said in the log,
    never the value)."""
    if state_dir is not None:
        try:
            return load_token(state_dir)
        except OSError as exc:
            log.warning(
                "cannot keep the A2A token in %s (%s): local A2A clients get one for this run "
                "only, which edge agents token cannot show",
                token_file(state_dir),
                exc.strerror or exc,
            )
    return secrets.token_urlsafe(TOKEN_BYTES)
