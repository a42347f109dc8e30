"""Open a file tool's path beneath a root's directory descriptor, so no rename can redirect it.

A path is first given its root by ``Policy.root_for`` (lexically, no link
followed); that root directory is opened once per call, and the rest of the
path is resolved beneath its descriptor:

* on Linux with ``openat2(2)`` and ``RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS``
  (the cffi module ``edge.tools._beneath``): the kernel refuses ``..`` above
  the root, absolute symlinks, symlinks leading out and ``/proc`` magic links,
  atomically, whatever another process swaps in between;
* elsewhere, or where a seccomp filter hides openat2 (``ENOSYS``/``EPERM``),
  or when ``Policy.portable_walk`` asks for it, by walking the path one
  component at a time: each opened with ``O_NOFOLLOW`` relative to the
  descriptor of its parent, each symlink read with ``readlink`` and its target
  resolved again beneath the root (at most ``MAX_LINKS``), ``..`` taken by
  going back to a descriptor already held, never above the root.

Symlinks that stay beneath the root work. One that leads elsewhere is
followed only if its real path lies in a root (it is then opened beneath that
root); otherwise the call fails with "resolves outside the allowed roots".
Every descriptor is the caller's to close; ``Confined`` closes its roots.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Final, TypeVar

from ..errors import PolicyError, ToolError
from .policy import Policy

#: Most symlinks one lookup follows (the kernel's limit too).
MAX_LINKS: Final = 40
#: A directory descriptor to list or to use as the base of ``*at`` calls.
DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: Reading a file: never block on a FIFO or a device, never make it our terminal.
READ_FLAGS: Final = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
#: Linux's ``O_PATH`` (0 elsewhere): a descriptor to fstat, with no open of the file itself.
O_PATH: Final = getattr(os, "O_PATH", 0)
#: What openat2 answers when the lookup would leave the root (EXDEV) or meets a magic link.
_ESCAPES: Final = frozenset({errno.EXDEV, errno.ELOOP})
#: Lookups tried when openat2 answers EAGAIN (a rename raced a ``..`` in the path).
_RETRIES: Final = 3
#: What a seccomp filter answers for a system call it hides.
_HIDDEN: Final = frozenset({errno.ENOSYS, errno.EPERM})

T = TypeVar("T")


def _load_openat2() -> Callable[[int, bytes, int, int], int] | None:
    """``edge_open_beneath`` from the cffi module, or ``None`` where it was not built."""
    try:
        from . import _beneath  # type: ignore[attr-defined]
    except ImportError:
        return None
    fn: Callable[[int, bytes, int, int], int] = _beneath.lib.edge_open_beneath
    return fn


def kind(mode: int) -> str:
    """What a file of ``mode`` is, for messages: ``"a FIFO"``, ``"a socket"``, ..."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _error(code: int, shown: str) -> OSError:
    return OSError(code, os.strerror(code), shown)


def walk_open(root_fd: int, root: str, rel: str, flags: int, mode: int = 0o666) -> int:
    """Open ``rel`` beneath ``root_fd`` (the directory ``root``) one component at a time.

    Raises:
        OSError: as ``open`` would; ``EXDEV`` when the lookup would leave the root,
            ``ELOOP`` after ``MAX_LINKS`` symlinks.
    """
    todo = list(reversed(_parts(rel)))
    chain = [root_fd]  # descriptors from the root down; chain[0] is not ours
    links = 0
    try:
        while True:
            if not todo:
                return os.open(".", flags, mode, dir_fd=chain[-1])
            name = todo.pop()
            if name == "..":
                if len(chain) == 1:
                    raise _error(errno.EXDEV, rel)
                os.close(chain.pop())
                continue
            last = not todo
            want = (flags if last else DIR_FLAGS) | os.O_NOFOLLOW
            failure: OSError | None = None
            try:
                fd = os.open(name, want, mode, dir_fd=chain[-1])
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise
                fd, failure = -1, exc  # perhaps a symlink: O_NOFOLLOW refused it
            if fd >= 0 and not (last and flags & O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode)):
                if last:
                    return fd
                chain.append(fd)
                continue
            if fd >= 0:
                os.close(fd)  # an O_PATH descriptor of the link itself
            target = _link_target(name, chain[-1])
            if target is None:
                raise failure or _error(errno.ENOENT, rel)
            links += 1
            if links > MAX_LINKS:
                raise _error(errno.ELOOP, rel)
            if target.startswith("/"):
                inside = _inside(root, target)
                if inside is None:
                    raise _error(errno.EXDEV, rel)
                for held in chain[1:]:
                    os.close(held)
                del chain[1:]
                target = inside
            todo.extend(reversed(_parts(target)))
    finally:
        for held in chain[1:]:
            os.close(held)


def _link_target(name: str, dir_fd: int) -> str | None:
    """What the symlink ``name`` holds, or ``None`` if ``name`` is not (or no longer) one."""
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT):
            return None
        raise


def _inside(root: str, target: str) -> str | None:
    """The part of the absolute ``target`` below ``root`` (``..`` kept), or ``None``."""
    top, parts = _parts(root), _parts(target)
    if parts[: len(top)] != top:
        return None
    return "/".join(parts[len(top) :])


def _outside(path: str) -> ToolError:
    return ToolError(f"path {path!r} resolves outside the allowed roots")


class Confined:
    """The roots of one call, each opened once when first needed; ``close`` closes them.

    Use it as a context manager. Methods take a tool's path argument (relative
    to the workspace or absolute) and return descriptors the caller owns.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._openat2 = None if policy.portable_walk else _load_openat2()
        self._roots: dict[Path, int] = {}
        self._places: dict[str, tuple[Path, str]] = {}

    def __enter__(self) -> Confined:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        while self._roots:
            os.close(self._roots.popitem()[1])

    @property
    def uses_openat2(self) -> bool:
        """Whether lookups go through openat2 (else through the portable walk)."""
        return self._openat2 is not None

    def place(self, path: str) -> tuple[Path, str]:
        """``Policy.root_for(path)``, worked out once per call."""
        found = self._places.get(path)
        if found is None:
            found = self._places[path] = self.policy.root_for(path)
        return found

    def shown(self, path: str) -> str:
        """``path`` as messages and results show it: absolute, lexically normal."""
        return _join(*self.place(path))

    def open(self, path: str, flags: int, mode: int = 0o666) -> int:
        """A descriptor for ``path`` opened with ``flags``, symlinks followed beneath the root."""
        root, rel = self.place(path)
        return self._lookup(path, root, rel, flags, mode)

    def parent(self, path: str) -> tuple[int, str]:
        """The directory holding ``path`` (a descriptor) and its last component.

        For operations on a name: the last component is not followed, so a link
        is acted on, not its target. The name is ``""`` when ``path`` is a root
        (the descriptor is then that root).
        """
        root, rel = self.place(path)
        head, _, name = rel.rpartition("/")
        return self._lookup(path, root, head, DIR_FLAGS), name

    def makedirs(self, path: str) -> int:
        """The directory ``path`` (a descriptor), made one component at a time as needed."""
        root, rel = self.place(path)
        return self._makedirs(path, root, rel)

    def _makedirs(self, path: str, root: Path, rel: str) -> int:
        try:
            return self._lookup(path, root, rel, DIR_FLAGS)
        except FileNotFoundError:
            if not rel:
                raise
        head, _, name = rel.rpartition("/")
        parent = self._makedirs(path, root, head)
        try:
            try:
                os.mkdir(name, 0o777, dir_fd=parent)
            except FileExistsError:
                pass
            made = _join(root, rel)
            return _named(lambda: os.open(name, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent), made)
        finally:
            os.close(parent)

    # -- resolution ----------------------------------------------------------------

    def _root_fd(self, root: Path) -> int:
        fd = self._roots.get(root)
        if fd is None:
            fd = self._roots[root] = os.open(root, DIR_FLAGS)
        return fd

    def _open_at(self, root: Path, rel: str, flags: int, mode: int) -> int:
        root_fd = self._root_fd(root)
        if self._openat2 is not None:
            for _ in range(_RETRIES):
                fd = self._openat2(root_fd, os.fsencode(rel or "."), flags, mode)
                if fd != -errno.EAGAIN:
                    break
            if fd >= 0:
                return fd
            if -fd not in _HIDDEN:
                raise OSError(-fd, os.strerror(-fd))
            fd = walk_open(root_fd, str(root), rel, flags, mode)
            self._openat2 = None  # hidden by a filter: walk for the rest of this call
            return fd
        return walk_open(root_fd, str(root), rel, flags, mode)

    def _lookup(self, path: str, root: Path, rel: str, flags: int, mode: int = 0o666) -> int:
        """Open ``rel`` beneath ``root``; if that leaves the root, try once where it really lands.

        A link from one root into another is allowed: its real path names the
        other root, and the lookup is done again beneath that one.
        """
        shown = _join(root, rel)
        try:
            return _named(lambda: self._open_at(root, rel, flags, mode), shown)
        except OSError as exc:
            if exc.errno not in _ESCAPES:
                raise
            first = exc
        try:
            other, other_rel = self.policy.root_for(os.path.realpath(shown))
        except (PolicyError, OSError):  # outside, or changing under realpath's feet
            raise _outside(path) from None
        if (other, other_rel) == (root, rel):
            if first.errno == errno.ELOOP:
                raise first
            raise _outside(path)
        try:
            return _named(lambda: self._open_at(other, other_rel, flags, mode), shown)
        except OSError as exc:
            if exc.errno in _ESCAPES:
                raise _outside(path) from None
            raise


def _join(root: Path, rel: str) -> str:
    top = str(root)
    if not rel:
        return top
    return f"{top}{rel}" if top.endswith("/") else f"{top}/{rel}"


def _named(attempt: Callable[[], T], shown: str) -> T:
    """``attempt()``, any ``OSError`` it raises naming ``shown``, the path the caller knows."""
    try:
        return attempt()
    except OSError as exc:
        if exc.errno is None:
            raise
        raise type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), shown) from None


def open_readable(roots: Confined, path: str, *, directory: bool) -> tuple[int, os.stat_result]:
    """``path`` opened for reading, with its ``fstat``: a regular file, or a directory if allowed.

    Where ``O_PATH`` exists the kind is looked at before the file is opened, so
    a FIFO, socket or device is refused without being opened at all; the
    descriptor then opened is checked again (``O_NONBLOCK``: a FIFO swapped in
    meanwhile cannot block).

    Raises:
        ToolError: ``path`` is a directory (unless ``directory``), a FIFO, a
            socket, a device: the message names which.
    """
    if O_PATH:
        probe = roots.open(path, O_PATH | os.O_CLOEXEC)
        try:
            _refuse(roots, path, os.fstat(probe).st_mode, directory)
        finally:
            os.close(probe)
    try:
        fd = roots.open(path, READ_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.EOPNOTSUPP):
            shown = roots.shown(path)
            raise ToolError(f"{shown} is a socket or a device, not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        _refuse(roots, path, st.st_mode, directory)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _refuse(roots: Confined, path: str, mode: int, directory: bool) -> None:
    if stat.S_ISREG(mode) or (directory and stat.S_ISDIR(mode)):
        return
    if stat.S_ISDIR(mode):
        raise ToolError(f"{roots.shown(path)} is a directory (use file_ops list)")
    raise ToolError(f"{roots.shown(path)} is {kind(mode)}, not a regular file")
