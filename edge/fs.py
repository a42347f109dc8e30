"""Files and directories edge makes for itself: readable by the user alone.

``write_private`` is how every file that may hold tool output or secrets'
neighbours (the outbox, ``mcp.json``) reaches the disk: written to a temporary
file with mode 0600 beside the target, flushed, then renamed over it, so a
crash leaves either the old file or the new one, never half of one.
``create_private`` opens a new file of mode 0600 for writers that stream (the
recordings). ``make_private_dir`` creates the directories they go in with mode
0700; a directory that already exists is left as it is (it may be one the user
made and shares on purpose), so only what edge creates gets edge's mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

#: Permission bits of every file edge writes for itself.
PRIVATE_MODE: Final = 0o600
#: Permission bits of every directory edge creates for itself.
PRIVATE_DIR_MODE: Final = 0o700


def make_private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents with mode 0700; existing ones are not touched.

    Raises:
        OSError: a directory cannot be created (or a parent is a file).
    """
    missing: list[Path] = []
    current = path
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(PRIVATE_DIR_MODE)
        except FileExistsError:
            if directory.is_dir():
                continue  # made meanwhile by someone else: theirs, left as it is
            raise
        # mkdir's mode passes through the umask, which can only narrow it: set it exactly.
        directory.chmod(PRIVATE_DIR_MODE)


def create_private(path: Path) -> int:
    """Open ``path`` for reading and writing, created or emptied, mode 0600; its descriptor.

    The parent directory must exist (``make_private_dir``). A file that was there
    already is made 0600 as well: what edge writes is private whoever made the file.

    Raises:
        OSError: the file cannot be opened.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, text: str, *, durable: bool = True) -> None:
    """Replace ``path`` with ``text`` atomically, mode 0600 (missing parents created 0700).

    ``durable`` (the default) also syncs the file to disk before it replaces the
    old one, so it survives a power cut; a file that only has to outlive edge
    itself (a ``kill -9``) can skip that: the page cache keeps it.

    Raises:
        OSError: the directory or the file cannot be written.
    """
    make_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)  # a stale temporary file keeps its mode otherwise
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
