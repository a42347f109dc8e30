"""Directory trees by descriptor: list, find, copy, move and delete without following a link.

Companion of ``edge.tools.beneath``: once the top of a tree is open beneath a
root, everything below is reached from descriptors, each subdirectory opened
with ``O_NOFOLLOW | O_DIRECTORY`` relative to its parent's descriptor, so a
directory swapped for a symlink mid-walk makes the operation fail, never act
outside. Inside a tree a symlink is never followed: listing and finding skip
it (listing shows it as a link), copying copies it as a link (its text, not
its target), deleting removes the link. FIFOs, sockets and devices are never
opened: finding and copying skip them, deleting unlinks them.

A copy is whole or absent: it stops at the next entry when asked (``check``)
and removes what it had made. A move is one ``rename``; across file systems it
copies (stoppable the same way), then deletes the source without stopping.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from ..errors import ToolError
from .beneath import DIR_FLAGS, READ_FLAGS, Confined, open_readable

#: Deepest directory level a walk descends to.
MAX_DEPTH: Final = 256
#: Bytes copied per read.
COPY_CHUNK: Final = 1024 * 1024


def _no_check() -> None:
    return None


def entries(dir_fd: int) -> list[tuple[str, os.stat_result]]:
    """Every entry of the open directory with its ``lstat``, sorted by name."""
    found: list[tuple[str, os.stat_result]] = []
    with os.scandir(dir_fd) as it:
        for entry in it:
            try:
                found.append((entry.name, entry.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue  # removed since it was listed
    found.sort(key=lambda e: e[0])
    return found


def kinds(dir_fd: int) -> list[tuple[str, bool, bool]]:
    """(name, is a directory, is a regular file) of every entry, sorted; links are neither.

    The kinds come from the directory itself (``d_type``), with no ``stat`` where it has them.
    """
    with os.scandir(dir_fd) as it:
        found = [
            (e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False))
            for e in it
        ]
    found.sort(key=lambda e: e[0])
    return found


def open_child_dir(dir_fd: int, name: str) -> int:
    return os.open(name, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)


def find_files(
    dir_fd: int,
    glob: str | None,
    skip_dirs: frozenset[str],
    check: Callable[[], None] = _no_check,
) -> Iterator[tuple[int, str, str]]:
    """(directory descriptor, name, path relative to the top) of each regular file.

    Files of a directory come before its subdirectories, each sorted by name.
    ``glob`` is matched against the name and the relative path. The descriptor
    is valid until the next item is asked for.
    """
    yield from _find(dir_fd, "", glob, skip_dirs, check, 0)


def _find(
    dir_fd: int,
    prefix: str,
    glob: str | None,
    skip_dirs: frozenset[str],
    check: Callable[[], None],
    depth: int,
) -> Iterator[tuple[int, str, str]]:
    check()
    listed = kinds(dir_fd)
    for name, _, is_file in listed:
        if is_file:
            rel = prefix + name
            if glob is None or fnmatch.fnmatch(name, glob) or fnmatch.fnmatch(rel, glob):
                yield dir_fd, name, rel
    if depth >= MAX_DEPTH:
        return
    for name, is_dir, _ in listed:
        if is_dir and name not in skip_dirs:
            try:
                child = open_child_dir(dir_fd, name)
            except OSError:
                continue  # gone, swapped for a link, or not readable
            try:
                yield from _find(child, f"{prefix}{name}/", glob, skip_dirs, check, depth + 1)
            finally:
                os.close(child)


def open_child_file(dir_fd: int, name: str) -> tuple[int, os.stat_result] | None:
    """The regular file ``name`` in ``dir_fd`` opened for reading, or ``None`` if it is not one."""
    fd = os.open(name, READ_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


def remove(dir_fd: int, name: str, depth: int = 0) -> None:
    """Delete ``name`` in ``dir_fd``: a link or file is unlinked, a directory emptied, removed."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    if depth >= MAX_DEPTH:
        raise ToolError(f"refusing to delete a tree deeper than {MAX_DEPTH} levels")
    child = open_child_dir(dir_fd, name)
    try:
        for entry, is_dir, _ in kinds(child):
            if is_dir:
                remove(child, entry, depth + 1)
            else:
                os.unlink(entry, dir_fd=child)  # EISDIR if swapped for a directory since
    finally:
        os.close(child)
    os.rmdir(name, dir_fd=dir_fd)


@dataclass
class Copier:
    """One copy: files and trees from descriptors to names in a destination directory.

    ``check`` is called between entries (it raises to stop); on any failure the
    part already copied is removed again, so a copy is whole or absent.
    """

    check: Callable[[], None] = _no_check
    #: Entries passed over: FIFOs, sockets and devices.
    skipped: int = 0
    #: (device, inode) of everything this copy made: undone on failure, never copied again.
    made: set[tuple[int, int]] = field(default_factory=set)

    def copy_fd(self, src: int, st: os.stat_result, dst_dir: int, name: str) -> None:
        """Copy the open file or directory ``src`` to ``name`` in ``dst_dir`` (must not exist)."""
        try:
            self._copy_fd(src, st, dst_dir, name, 0)
        except BaseException:
            self._undo(dst_dir, name)
            raise

    def copy_entry(self, src_dir: int, src_name: str, dst_dir: int, name: str) -> None:
        """Copy ``src_name`` of ``src_dir`` as it is (a link as a link) to ``name`` in ``dst_dir``.

        ``move`` across file systems uses it; the destination must not exist.
        """
        try:
            self._copy_entry(src_dir, src_name, dst_dir, name, 0)
        except BaseException:
            self._undo(dst_dir, name)
            raise

    def _undo(self, dst_dir: int, name: str) -> None:
        """Remove ``name`` again if this copy made it (never what was there before)."""
        try:
            st = os.stat(name, dir_fd=dst_dir, follow_symlinks=False)
            if (st.st_dev, st.st_ino) in self.made:
                remove(dst_dir, name)
        except OSError:
            pass

    def _copy_entry(self, src_dir: int, src_name: str, dst_dir: int, name: str, depth: int) -> None:
        self.check()
        st = os.stat(src_name, dir_fd=src_dir, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src_name, dir_fd=src_dir), name, dir_fd=dst_dir)
            link = os.stat(name, dir_fd=dst_dir, follow_symlinks=False)
            self.made.add((link.st_dev, link.st_ino))
            return
        if stat.S_ISDIR(st.st_mode):
            fd = open_child_dir(src_dir, src_name)
        elif stat.S_ISREG(st.st_mode):
            opened = open_child_file(src_dir, src_name)
            if opened is None:
                self.skipped += 1
                return
            fd = opened[0]
        else:
            self.skipped += 1
            return
        try:
            self._copy_fd(fd, os.fstat(fd), dst_dir, name, depth)
        finally:
            os.close(fd)

    def _copy_fd(self, src: int, st: os.stat_result, dst_dir: int, name: str, depth: int) -> None:
        if stat.S_ISREG(st.st_mode):
            self._copy_file(src, st, dst_dir, name)
            return
        if not stat.S_ISDIR(st.st_mode):
            self.skipped += 1
            return
        if depth >= MAX_DEPTH:
            raise ToolError(f"refusing to copy a tree deeper than {MAX_DEPTH} levels")
        listed = entries(src)
        os.mkdir(name, 0o700, dir_fd=dst_dir)
        made = open_child_dir(dst_dir, name)
        try:
            here = os.fstat(made)
            self.made.add((here.st_dev, here.st_ino))
            for child, child_st in listed:
                if (child_st.st_dev, child_st.st_ino) in self.made:
                    continue  # the copy itself, made inside what it copies
                self._copy_entry(src, child, made, child, depth + 1)
            os.fchmod(made, stat.S_IMODE(st.st_mode) & 0o777)
            os.utime(made, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(made)

    def _copy_file(self, src: int, st: os.stat_result, dst_dir: int, name: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(name, flags, 0o600, dir_fd=dst_dir)
        try:
            here = os.fstat(out)
            self.made.add((here.st_dev, here.st_ino))
            offset = 0
            while chunk := os.pread(src, COPY_CHUNK, offset):
                offset += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
            os.fchmod(out, stat.S_IMODE(st.st_mode) & 0o777)
            os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(out)


def destination(roots: Confined, dest: str, name: str) -> tuple[int, str, str]:
    """Where ``name`` goes for ``dest``: (directory descriptor, name in it, path shown).

    An existing directory (links followed beneath the root) takes ``name``
    inside it; otherwise ``dest`` names the new entry, its parents made.

    Raises:
        ToolError: the destination already exists.
    """
    shown = roots.shown(dest)
    try:
        fd = roots.open(dest, DIR_FLAGS)
        target = os.path.join(shown, name)
    except (FileNotFoundError, NotADirectoryError):
        fd = roots.makedirs(os.path.dirname(shown))
        target, name = shown, os.path.basename(shown)
    try:
        os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return fd, name, target
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    raise ToolError(f"{target} already exists")


def move(roots: Confined, path: str, dest: str, check: Callable[[], None]) -> tuple[str, str]:
    """Move ``path`` itself (a link, not its target) to ``dest``; (path shown, dest shown)."""
    shown = roots.shown(path)
    parent, name = roots.parent(path)
    try:
        if not name:
            raise ToolError(f"refusing to move the root {shown}")
        try:
            os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            raise ToolError(f"{shown} does not exist") from None
        to_dir, to_name, target = destination(roots, dest, name)
        try:
            try:
                os.rename(name, to_name, src_dir_fd=parent, dst_dir_fd=to_dir)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                Copier(check).copy_entry(parent, name, to_dir, to_name)
                remove(parent, name)
        finally:
            os.close(to_dir)
    finally:
        os.close(parent)
    return shown, target


def copy(roots: Confined, path: str, dest: str, check: Callable[[], None]) -> tuple[str, str, int]:
    """Copy ``path`` (links followed beneath the root) to ``dest``; (shown, dest shown, skipped)."""
    shown = roots.shown(path)
    if not roots.place(path)[1]:
        raise ToolError(f"refusing to copy the root {shown}")
    fd, st = open_readable(roots, path, directory=True)
    try:
        to_dir, to_name, target = destination(roots, dest, os.path.basename(shown))
        copier = Copier(check)
        try:
            copier.copy_fd(fd, st, to_dir, to_name)
        finally:
            os.close(to_dir)
    finally:
        os.close(fd)
    return shown, target, copier.skipped
