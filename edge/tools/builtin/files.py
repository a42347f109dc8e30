"""``file_read``, ``file_write`` and ``file_ops``: files inside the allowed roots.

Every path goes through ``Policy.resolve`` (symlinks followed, roots enforced).
The blocking work runs in a worker thread so a large file never stalls pings.
"""

from __future__ import annotations

import io
import os
import shutil
import stat as stat_mod
from pathlib import Path
from typing import Any, Final

import trio

from ...errors import ToolError
from ...protocol import MAX_OUTPUT_CHARS, ok_result
from ..registry import CallContext, ToolResult, ToolSpec

#: Bytes ``file_read`` looks at for a NUL to call a file binary.
BINARY_SNIFF: Final = 8192
#: Regular files up to this size are read on the event loop, not in a thread (bytes).
INLINE_READ_BYTES: Final = 64 * 1024
#: Most characters ``file_read`` collects; the result is cut to the protocol limit anyway.
READ_CAP: Final = MAX_OUTPUT_CHARS + 1
#: Most bytes one ``file_write`` may write.
MAX_WRITE_BYTES: Final = 32 * 1024 * 1024
#: Most entries ``file_ops list`` returns.
MAX_LIST: Final = 5000


def _read(path: Path, offset: int, limit: int | None) -> ToolResult:
    with open(path, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        head = raw.read(BINARY_SNIFF)
        if b"\x00" in head:
            raise ToolError(f"{path} is a binary file ({size} bytes)")
        if offset == 0 and limit is None and size <= INLINE_READ_BYTES:
            # The common case, a whole small file: no line splitting needed.
            whole = (head + raw.read()).decode("utf-8", errors="replace")
            count = whole.count("\n") + (1 if whole and not whole.endswith("\n") else 0)
            return ok_result(whole, lines=count, size=size)
        raw.seek(0)
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        lines: list[str] = []
        chars = 0
        more = False
        for line_no, line in enumerate(text):
            if line_no < offset:
                continue
            if (limit is not None and len(lines) >= limit) or chars >= READ_CAP:
                more = True
                break
            lines.append(line)
            chars += len(line)
    fields: dict[str, Any] = {"lines": len(lines), "size": size}
    if more:
        fields["next_offset"] = offset + len(lines)
    return ok_result("".join(lines), **fields)


async def _file_read(args: dict[str, Any], ctx: CallContext) -> ToolResult:
    path = ctx.policy.resolve(args["path"])
    st = path.stat()
    if stat_mod.S_ISDIR(st.st_mode):
        raise ToolError(f"{path} is a directory (use file_ops list)")
    offset, limit = args.get("offset", 0), args.get("limit")
    if stat_mod.S_ISREG(st.st_mode) and st.st_size <= INLINE_READ_BYTES:
        # A small regular file reads faster than a thread hand-off (~0.2 ms).
        return _read(path, offset, limit)
    return await trio.to_thread.run_sync(_read, path, offset, limit)


FILE_READ: Final = ToolSpec(
    name="file_read",
    description=(
        "Read a text file. offset is the first line (0-based), limit the most lines; "
        "next_offset is set when there is more."
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


def _write(path: Path, content: str, append: bool) -> ToolResult:
    data = content.encode("utf-8")
    if len(data) > MAX_WRITE_BYTES:
        raise ToolError(f"content of {len(data)} bytes is over the {MAX_WRITE_BYTES} byte limit")
    if path.is_dir():
        raise ToolError(f"{path} is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab" if append else "wb") as out:
        out.write(data)
    verb = "appended" if append else "wrote"
    return ok_result(f"{verb} {len(data)} bytes to {path}", bytes=len(data), path=str(path))


async def _file_write(args: dict[str, Any], ctx: CallContext) -> ToolResult:
    path = ctx.policy.resolve(args["path"])
    return await trio.to_thread.run_sync(
        _write, path, args["content"], bool(args.get("append", False))
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


def _stat(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {
        "path": str(path),
        "type": _kind(st.st_mode),
        "size": st.st_size,
        "mtime": st.st_mtime,
        "mode": oct(stat_mod.S_IMODE(st.st_mode)),
    }


def _list(path: Path) -> ToolResult:
    entries: list[dict[str, Any]] = []
    with os.scandir(path) as it:
        for entry in it:
            st = entry.stat(follow_symlinks=False)
            entries.append({"name": entry.name, "type": _kind(st.st_mode), "size": st.st_size})
    entries.sort(key=lambda e: str(e["name"]))
    shown = entries[:MAX_LIST]
    text = "\n".join(f"{e['name']}{'/' if e['type'] == 'dir' else ''}" for e in shown)
    fields: dict[str, Any] = {"entries": shown, "count": len(entries)}
    if len(entries) > MAX_LIST:
        fields["more"] = len(entries) - MAX_LIST
    return ok_result(text, **fields)


def _ops(op: str, path: Path, dest: Path | None, ctx: CallContext) -> ToolResult:
    if op == "list":
        return _list(path)
    if op == "stat":
        info = _stat(path)
        return ok_result(f"{info['type']} {info['size']} bytes {info['mode']}", **info)
    if op == "mkdir":
        path.mkdir(parents=True, exist_ok=True)
        return ok_result(f"made {path}")
    if op == "delete":
        if ctx.policy.is_root(path):
            raise ToolError(f"refusing to delete the root {path}")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return ok_result(f"deleted {path}")
    assert dest is not None
    if ctx.policy.is_root(path):
        raise ToolError(f"refusing to {op} the root {path}")
    if dest.exists() and dest.is_dir():
        dest = dest / path.name
    if dest.exists():
        raise ToolError(f"{dest} already exists")
    if not path.exists():
        raise ToolError(f"{path} does not exist")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if op == "move":
        shutil.move(path, dest)
        return ok_result(f"moved {path} to {dest}", dest=str(dest))
    if path.is_dir():
        shutil.copytree(path, dest, symlinks=True)
    else:
        shutil.copy2(path, dest)
    return ok_result(f"copied {path} to {dest}", dest=str(dest))


async def _file_ops(args: dict[str, Any], ctx: CallContext) -> ToolResult:
    op = args["op"]
    if op == "delete" or op == "move":
        # Act on a link itself, not on what it points to: resolve the parent only.
        raw = Path(args["path"])
        parent = ctx.policy.resolve(str(raw.parent) if str(raw.parent) != "" else ".")
        path = parent / raw.name
        if raw.name in ("", ".", ".."):
            path = ctx.policy.resolve(args["path"])
    else:
        path = ctx.policy.resolve(args["path"])
    dest = None
    if op in ("move", "copy"):
        if "dest" not in args:
            raise ToolError(f"file_ops {op} needs dest")
        dest = ctx.policy.resolve(args["dest"])
    return await trio.to_thread.run_sync(_ops, op, path, dest, ctx)


FILE_OPS: Final = ToolSpec(
    name="file_ops",
    description=(
        "File operations inside the allowed roots: list a directory, stat, mkdir, "
        "move, copy (files or trees) and delete (files or trees)."
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
