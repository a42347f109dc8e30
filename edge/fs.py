"""Files edge writes for itself: atomically, and readable by the user alone.

``write_private`` is how every file that may hold tool output or secrets'
neighbours (the outbox, ``mcp.json``) reaches the disk: written to a temporary
file with mode 0600 beside the target, flushed, then renamed over it, so a
crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

#: Permission bits of every file edge writes for itself.
PRIVATE_MODE: Final = 0o600


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, mode 0600 (parents created).

    Raises:
        OSError: the directory or the file cannot be written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
