"""``file_read``, ``file_write`` and ``file_ops``: files beneath the allowed roots.

Every path is opened beneath its root's directory descriptor
(``edge.tools.beneath``) and the work is done on descriptors, trees walked by
descriptor (``edge.tools.walk``), so nothing swapped in after a check can
redirect a read, a write or a delete out of the roots. Operations on a name
(delete, move, stat) act on the last component itself: a link, not its target.
FIFOs, sockets and devices are refused, never read.

Reads stream in ``CHUNK`` byte reads and hold no more than the output limit
needs. Whatever may take a while runs in a worker thread that opens and closes
its own descriptors, started with ``abandon_on_cancel=True`` so a timeout or a
shutdown never waits for it. An abandoned read is dropped. An abandoned write,
delete or move finishes in its thread (a write or rename is never cut
halfway; a move across file systems copies, then deletes the source, and
stops only while copying); an abandoned copy stops at the next entry and
removes what it had copied, so a copy is whole or absent.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

import trio

from ...errors import ToolError
from ...protocol import MAX_OUTPUT_CHARS, ok_result
from .. import walk
from ..beneath import DIR_FLAGS, O_PATH, Confined, open_readable
from ..policy import Policy
from ..registry import CallContext, ToolResult, ToolSpec

#: Bytes ``file_read`` looks at for a NUL to call a file binary.
BINARY_SNIFF: Final = 8192
#: Regular files up to this size are read on the event loop, not in a thread (bytes).
INLINE_READ_BYTES: Final = 64 * 1024
#: Most characters ``file_read`` returns: the protocol's output limit, so no
#: result is cut after the lines it counts (a longer first line is cut to it).
READ_CAP: Final = MAX_OUTPUT_CHARS
#: Bytes per read when ``file_read`` streams a file.
CHUNK: Final = 64 * 1024
#: Most bytes one ``file_write`` may write.
MAX_WRITE_BYTES: Final = 32 * 1024 * 1024
#: Most entries ``file_ops list`` returns.
MAX_LIST: Final = 5000
#: How ``file_write`` opens its file: created if missing, never blocking, never our terminal.
WRITE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


def _chunks(fd: int, first: bytes) -> Iterator[bytes]:
    if first:
        yield first
    while chunk := os.read(fd, CHUNK):
        yield chunk


def read_lines(
    chunks: Iterable[bytes], offset: int, limit: int | None, cap: int
) -> tuple[str, int, bool, bool]:
    """Lines ``offset`` to ``offset + limit`` of a stream of chunks, at most ``cap`` characters.

    Returns (text, lines, more, cut): whole lines only, but for a first line
    longer than ``cap``, cut to it (``cut``); ``more`` when a line follows the
    ones returned. Holds one chunk, the text and at most ``4 * cap`` bytes of
    the line at hand, however long the lines are.
    """
    out: list[str] = []
    chars = line_no = 0
    pending, cutting, cut = bytearray(), False, False
    for chunk in chunks:
        pos, size = 0, len(chunk)
        while pos < size:
            nl = chunk.find(b"\n", pos)
            if line_no < offset:
                line_no, pos = (line_no + 1, nl + 1) if nl >= 0 else (line_no, size)
                continue
            if not pending and limit is not None and len(out) >= limit:
                return "".join(out), len(out), True, cut
            end = size if nl < 0 else nl + 1
            keep = 4 * (cap - chars) + 4 - len(pending)  # more bytes are more than room chars
            if not cutting and end - pos > keep:
                if out:
                    return "".join(out), len(out), True, cut  # left whole for the next call
                cutting = True
                pending += chunk[pos : pos + keep]
            elif not cutting:
                pending += chunk[pos:end]
            pos = end
            if nl >= 0:
                taken = _take(out, pending, cap - chars)
                if taken is None:
                    return "".join(out), len(out), True, cut
                chars, line_no, cut = chars + len(out[-1]), line_no + 1, cut or taken or cutting
                pending.clear()
                cutting = False
    if pending:
        taken = _take(out, pending, cap - chars)
        if taken is None:
            return "".join(out), len(out), True, cut
        cut = cut or taken or cutting
    return "".join(out), len(out), False, cut


def _take(out: list[str], line: bytearray, room: int) -> bool | None:
    """Append ``line`` decoded; a first line is cut to ``room`` characters (True), a later one
    that does not fit is not taken (None)."""
    text = line.decode("utf-8", errors="replace")
    if len(text) <= room:
        out.append(text)
        return False
    if out:
        return None
    out.append(text[:room])
    return True


def _read_fd(fd: int, size: int, offset: int, limit: int | None, shown: str) -> ToolResult:
    head = os.read(fd, BINARY_SNIFF)
    if b"\x00" in head:
        raise ToolError(f"{shown} is a binary file ({size} bytes)")
    if offset == 0 and limit is None and size <= INLINE_READ_BYTES:
        # The common case, a whole small file: no line splitting needed.
        data = head + os.read(fd, INLINE_READ_BYTES + 1 - len(head)) if head else b""
        whole = data.decode("utf-8", errors="replace")
        if len(data) <= INLINE_READ_BYTES and len(whole) <= READ_CAP:
            count = whole.count("\n") + (1 if whole and not whole.endswith("\n") else 0)
            return ok_result(whole, lines=count, size=size)
        head = data  # grown since its fstat, or too many characters: go line by line
    text, lines, more, cut = read_lines(_chunks(fd, head), offset, limit, READ_CAP)
    fields: dict[str, Any] = {"lines": lines, "size": size}
    if more:
        fields["next_offset"] = offset + lines
    if cut:
        fields["truncated"] = True
    return ok_result(text, **fields)


def _read_path(policy: Policy, path: str, offset: int, limit: int | None) -> ToolResult:
    with Confined(policy) as roots:
        fd, st = open_readable(roots, path, directory=False)
        try:
            return _read_fd(fd, st.st_size, offset, limit, roots.shown(path))
        finally:
            os.close(fd)


async def _file_read(args: dict[str, Any], ctx: CallContext) -> ToolResult:
    path, offset, limit = args["path"], args.get("offset", 0), args.get("limit")
    with Confined(ctx.policy) as roots:
        fd, st = open_readable(roots, path, directory=False)
        try:
            if st.st_size <= INLINE_READ_BYTES:
                # A small regular file reads faster than a thread hand-off (~0.2 ms).
                return _read_fd(fd, st.st_size, offset, limit, roots.shown(path))
        finally:
            os.close(fd)
    return await trio.to_thread.run_sync(
        _read_path, ctx.policy, path, offset, limit, abandon_on_cancel=True
    )


FILE_READ: Final = ToolSpec(
    name="file_read",
    description=(
        "Read a text file. offset is the first line (0-based), limit the most lines; "
        "next_offset is set when there is more: the first line not returned. At most "
        f"{READ_CAP} characters come back, in whole lines; a first line longer than that "
        "is cut (truncated: true) and next_offset then points past it. Lines end at \\n."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1},
            "offset": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 1},
        },
        "required": ["path"],
        "additionalProperties": False,
    },
    run=_file_read,
)


def _write(policy: Policy, path: str, content: str, append: bool) -> ToolResult:
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ToolError(f"content is not valid text: {exc.reason} at {exc.start}") from None
    if len(data) > MAX_WRITE_BYTES:
        raise ToolError(f"content of {len(data)} bytes is over the {MAX_WRITE_BYTES} byte limit")
    with Confined(policy) as roots:
        shown = roots.shown(path)
        if not roots.place(path)[1]:
            raise ToolError(f"{shown} is a directory")
        os.close(roots.makedirs(os.path.dirname(shown)))
        _refuse_non_regular(roots, path, shown)
        fd = roots.open(path, WRITE_FLAGS | (os.O_APPEND if append else os.O_TRUNC))
        try:
            mode = os.fstat(fd).st_mode
            if not stat_mod.S_ISREG(mode):
                raise ToolError(f"{shown} is not a regular file")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    verb = "appended" if append else "wrote"
    return ok_result(f"{verb} {len(data)} bytes to {shown}", bytes=len(data), path=shown)


def _refuse_non_regular(roots: Confined, path: str, shown: str) -> None:
    """Refuse ``path`` if it exists and is not a regular file, before opening it."""
    if not O_PATH:
        return
    try:
        probe = roots.open(path, O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        mode = os.fstat(probe).st_mode
    finally:
        os.close(probe)
    if stat_mod.S_ISDIR(mode):
        raise ToolError(f"{shown} is a directory")
    if not stat_mod.S_ISREG(mode):
        raise ToolError(f"{shown} is not a regular file")


async def _file_write(args: dict[str, Any], ctx: CallContext) -> ToolResult:
    return await trio.to_thread.run_sync(
        _write,
        ctx.policy,
        args["path"],
        args["content"],
        bool(args.get("append", False)),
        abandon_on_cancel=True,
    )


FILE_WRITE: Final = ToolSpec(
    name="file_write",
    description="Write (or with append, add to) a text file; missing parent directories are made.",
    input_schema={
        "type": "object",
        "properties": {
            "path": {"type": "string", "minLength": 1},
            "content": {"type": "string"},
            "append": {"type": "boolean"},
        },
        "required": ["path", "content"],
        "additionalProperties": False,
    },
    run=_file_write,
)


def _kind(mode: int) -> str:
    if stat_mod.S_ISDIR(mode):
        return "dir"
    if stat_mod.S_ISREG(mode):
        return "file"
    if stat_mod.S_ISLNK(mode):
        return "link"
    return "other"


def _stat(roots: Confined, path: str) -> ToolResult:
    shown = roots.shown(path)
    parent, name = roots.parent(path)
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False) if name else os.fstat(parent)
        info: dict[str, Any] = {
            "path": shown,
            "type": _kind(st.st_mode),
            "size": st.st_size,
            "mtime": st.st_mtime,
            "mode": oct(stat_mod.S_IMODE(st.st_mode)),
        }
        if stat_mod.S_ISLNK(st.st_mode):
            info["target"] = os.readlink(name, dir_fd=parent)
    finally:
        os.close(parent)
    return ok_result(f"{info['type']} {info['size']} bytes {info['mode']}", **info)


def _list(roots: Confined, path: str) -> ToolResult:
    fd = roots.open(path, DIR_FLAGS)
    try:
        listed = walk.entries(fd)
    finally:
        os.close(fd)
    entries = [{"name": n, "type": _kind(st.st_mode), "size": st.st_size} for n, st in listed]
    shown = entries[:MAX_LIST]
    text = "\n".join(f"{e['name']}{'/' if e['type'] == 'dir' else ''}" for e in shown)
    fields: dict[str, Any] = {"entries": shown, "count": len(entries)}
    if len(entries) > MAX_LIST:
        fields["more"] = len(entries) - MAX_LIST
    return ok_result(text, **fields)


def _delete(roots: Confined, path: str) -> ToolResult:
    shown = roots.shown(path)
    parent, name = roots.parent(path)
    try:
        if not name:
            raise ToolError(f"refusing to delete the root {shown}")
        walk.remove(parent, name)
    finally:
        os.close(parent)
    return ok_result(f"deleted {shown}")


def _move(roots: Confined, path: str, dest: str, check: Callable[[], None]) -> ToolResult:
    shown, target = walk.move(roots, path, dest, check)
    return ok_result(f"moved {shown} to {target}", dest=target)


def _copy(roots: Confined, path: str, dest: str, check: Callable[[], None]) -> ToolResult:
    shown, target, skipped = walk.copy(roots, path, dest, check)
    fields: dict[str, Any] = {"dest": target}
    if skipped:
        fields["skipped"] = skipped
    return ok_result(f"copied {shown} to {target}", **fields)


def _ops(
    policy: Policy, op: str, path: str, dest: str | None, check: Callable[[], None]
) -> ToolResult:
    with Confined(policy) as roots:
        if op == "list":
            return _list(roots, path)
        if op == "stat":
            return _stat(roots, path)
        if op == "mkdir":
            os.close(roots.makedirs(path))
            return ok_result(f"made {roots.shown(path)}")
        if op == "delete":
            return _delete(roots, path)
        assert dest is not None
        policy.root_for(dest)  # a destination outside the roots is refused first
        if op == "move":
            return _move(roots, path, dest, check)
        return _copy(roots, path, dest, check)


async def _file_ops(args: dict[str, Any], ctx: CallContext) -> ToolResult:
    op, dest = args["op"], args.get("dest")
    if op in ("move", "copy") and dest is None:
        raise ToolError(f"file_ops {op} needs dest")
    return await trio.to_thread.run_sync(
        _ops,
        ctx.policy,
        op,
        args["path"],
        dest,
        trio.from_thread.check_cancelled,
        abandon_on_cancel=True,
    )


FILE_OPS: Final = ToolSpec(
    name="file_ops",
    description=(
        "File operations inside the allowed roots: list a directory, stat, mkdir, "
        "move, copy (files or trees) and delete (files or trees). stat, move and delete "
        "act on a symlink itself, not on what it points to; copying a tree copies the "
        "symlinks in it as symlinks and skips FIFOs, sockets and devices."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "op": {"enum": ["list", "stat", "mkdir", "move", "copy", "delete"]},
            "path": {"type": "string", "minLength": 1},
            "dest": {"type": "string", "minLength": 1},
        },
        "required": ["op", "path"],
        "additionalProperties": False,
    },
    run=_file_ops,
)
