"""``grep``: a regular-expression search over files inside the roots.

Python's ``re`` in a worker thread that checks for cancellation between files
and every few thousand lines, so a timeout or a cloud cancel stops it promptly.
Binary files, files over ``MAX_FILE_BYTES`` and VCS folders are passed over.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Any, Final

import trio

from ...errors import ToolError
from ...protocol import ok_result
from ..registry import CallContext, ToolResult, ToolSpec

#: Files larger than this are not searched (bytes).
MAX_FILE_BYTES: Final = 16 * 1024 * 1024
#: Matches returned unless the call asks for fewer (or more, up to ``MAX_RESULTS``).
DEFAULT_RESULTS: Final = 200
MAX_RESULTS: Final = 5000
#: A matching line is shown up to this many characters.
MAX_LINE_CHARS: Final = 500
_SKIP_DIRS: Final = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv"})


def _files(root: Path, glob: str | None) -> Any:
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if glob is not None:
                rel = path.relative_to(root).as_posix()
                if not (fnmatch.fnmatch(name, glob) or fnmatch.fnmatch(rel, glob)):
                    continue
            yield path


def _grep(
    root: Path, regex: re.Pattern[str], glob: str | None, most: int, base: Path
) -> ToolResult:
    matches: list[dict[str, Any]] = []
    files_searched = 0
    for path in _files(root, glob):
        trio.from_thread.check_cancelled()
        try:
            if path.is_symlink() or path.stat().st_size > MAX_FILE_BYTES:
                continue
            with open(path, "rb") as f:
                head = f.read(8192)
                if b"\x00" in head:
                    continue
                data = head + f.read()
        except OSError:
            continue
        files_searched += 1
        text = data.decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if number % 4096 == 0:
                trio.from_thread.check_cancelled()
            if regex.search(line):
                shown = os.path.relpath(path, base) if path.is_relative_to(base) else str(path)
                matches.append({"path": shown, "line": number, "text": line[:MAX_LINE_CHARS]})
                if len(matches) >= most:
                    return _report(matches, files_searched, limited=True)
    return _report(matches, files_searched, limited=False)


def _report(matches: list[dict[str, Any]], files: int, *, limited: bool) -> ToolResult:
    output = "\n".join(f"{m['path']}:{m['line']}:{m['text']}" for m in matches)
    return ok_result(
        output, matches=matches, count=len(matches), files_searched=files, limited=limited
    )


async def _grep_tool(args: dict[str, Any], ctx: CallContext) -> ToolResult:
    try:
        regex = re.compile(args["pattern"])
    except re.error as exc:
        raise ToolError(f"invalid pattern: {exc}") from None
    root = ctx.policy.resolve(args.get("path", "."))
    if not root.exists():
        raise ToolError(f"{args.get('path', '.')!r} does not exist")
    most = args.get("max_results", DEFAULT_RESULTS)
    return await trio.to_thread.run_sync(
        _grep, root, regex, args.get("glob"), most, ctx.policy.workspace
    )


GREP: Final = ToolSpec(
    name="grep",
    description=(
        "Search files for a regular expression (Python syntax). path is a file or "
        "directory (default: the workspace); glob filters file names, e.g. '*.py'."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "minLength": 1},
            "path": {"type": "string", "minLength": 1},
            "glob": {"type": "string", "minLength": 1},
            "max_results": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS},
        },
        "required": ["pattern"],
        "additionalProperties": False,
    },
    run=_grep_tool,
)
