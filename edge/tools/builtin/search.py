"""``grep``: a regular-expression search over files beneath the roots.

Patterns are RE2 (Google's linear-time engine, the ``google-re2`` binding):
no pattern can take more than time linear in the text, and the binding lets
go of the GIL while it matches, so a search never stalls the event loop. The
constructs RE2 lacks (backreferences, lookaround, atomic groups, possessive
quantifiers) are refused with a message naming them.

The search runs in a worker thread (``abandon_on_cancel=True``, so a timeout
or a cloud cancel returns at once) that checks for cancellation between files
and every few thousand lines. Files are reached by descriptor beneath their
root (``edge.tools.walk``), streamed in ``CHUNK`` byte reads, line by line;
a line longer than ``MAX_LINE_BYTES`` is searched in its first
``MAX_LINE_BYTES`` and shown cut. A directory search passes over binary
files, files over ``MAX_FILE_BYTES``, VCS folders, symlinks, FIFOs, sockets
and devices; a named FIFO, socket or device is an error.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import re2
import trio

from ...errors import ToolError
from ...protocol import ok_result
from .. import walk
from ..beneath import Confined, open_readable
from ..policy import Policy
from ..registry import CallContext, ToolResult, ToolSpec

#: Files larger than this are passed over in a directory search (bytes).
MAX_FILE_BYTES: Final = 16 * 1024 * 1024
#: Matches returned unless the call asks for fewer (or more, up to ``MAX_RESULTS``).
DEFAULT_RESULTS: Final = 200
MAX_RESULTS: Final = 5000
#: A matching line is shown up to this many characters.
MAX_LINE_CHARS: Final = 500
#: A line is searched up to this many bytes; the rest of a longer one is passed over.
MAX_LINE_BYTES: Final = 1024 * 1024
#: Bytes per read.
CHUNK: Final = 64 * 1024
#: Bytes at the start of a file looked at for a NUL, which makes it binary.
BINARY_SNIFF: Final = 8192
#: Lines between two checks for cancellation.
CHECK_EVERY: Final = 4096
#: Patterns ``compile_prefilter`` leaves alone: ``\A``, ``\z``, ``\C``, or a flag group
#: turning multi-line mode off.
_NO_PREFILTER: Final = re.compile(r"\\[AzC]|\(\?[a-zA-Z]*-[a-zA-Z]*m")
_SKIP_DIRS: Final = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv"})
#: RE2's complaints about what it does not have, and what to call them.
_UNSUPPORTED: Final = (
    ("invalid perl operator: (?=", "a lookahead (?=...)"),
    ("invalid perl operator: (?!", "a negative lookahead (?!...)"),
    ("invalid perl operator: (?<=", "a lookbehind (?<=...)"),
    ("invalid perl operator: (?<!", "a negative lookbehind (?<!...)"),
    ("invalid perl operator: (?>", "an atomic group (?>...)"),
    ("invalid perl operator: (?#", "a comment group (?#...)"),
    ("invalid escape sequence: \\k", "a named backreference (\\k<name>)"),
    ("invalid escape sequence: \\g", "a backreference (\\g<...>)"),
    ("invalid escape sequence: \\Z", "\\Z (RE2 writes the end of the text as \\z)"),
    ("invalid escape sequence: \\G", "\\G"),
    ("bad repetition operator: *+", "a possessive quantifier (*+)"),
    ("bad repetition operator: ++", "a possessive quantifier (++)"),
    ("bad repetition operator: ?+", "a possessive quantifier (?+)"),
)


def compile_pattern(pattern: str) -> Any:
    """``pattern`` compiled by RE2 (Perl-like syntax, UTF-8, leftmost-first matches).

    Raises:
        ToolError: the pattern is invalid, or uses what RE2 does not support.
    """
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        raise ToolError(_explain(exc)) from None


def _explain(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else str(exc)
    message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    what = None
    if message.startswith("invalid escape sequence: \\") and message[-1:].isdigit():
        what = f"a backreference ({message.rsplit(' ', 1)[-1]})"
    for start, name in _UNSUPPORTED:
        if message.startswith(start):
            what = name
    if what is None:
        return f"invalid pattern: {message}"
    return f"pattern uses {what}, which grep does not support: grep uses RE2 syntax, linear time"


def compile_prefilter(pattern: str) -> Any | None:
    """``pattern`` as a test of many lines at once, or ``None`` where it cannot be one.

    In multi-line mode and never matching a newline, it matches somewhere in a
    run of lines whenever the pattern matches one of those lines on its own, so
    a run it does not match is passed over with one call. (It may match where
    no single line does; such a run is then searched line by line.) Patterns
    that tell the start or end of the text from a line's (``\\A``, ``\\z``),
    that turn multi-line mode off, or match any byte (``\\C``) get none.
    """
    if _NO_PREFILTER.search(pattern):
        return None
    options = re2.Options()
    options.log_errors = False
    options.never_nl = True
    try:
        return re2.compile("(?m)" + pattern, options)
    except re2.error:
        return None


@dataclass
class _Search:
    regex: Any
    prefilter: Any | None
    most: int
    check: Callable[[], None]
    matches: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0

    @property
    def full(self) -> bool:
        return len(self.matches) >= self.most

    def file(self, fd: int, shown: str) -> None:
        """Search the open file ``fd``, shown as ``shown``; a binary file is passed over."""
        number, first = 0, True
        pending: bytes | None = None  # the start of a line begun in an earlier chunk
        while chunk := os.read(fd, CHUNK):
            if first:
                if b"\x00" in chunk[:BINARY_SNIFF]:
                    return
                self.files, first = self.files + 1, False
            self.check()
            pos = 0
            if pending is not None:
                nl = chunk.find(b"\n")
                if nl < 0:
                    if len(pending) < MAX_LINE_BYTES:
                        pending = (pending + chunk)[:MAX_LINE_BYTES]
                    continue
                number += 1
                self._line(pending + chunk[: min(nl, MAX_LINE_BYTES)], number, shown)
                pending, pos = None, nl + 1
            last = chunk.rfind(b"\n")
            if last >= pos and not self.full:
                number = self._lines(chunk, pos, last, number, shown)
                pos = last + 1
            if self.full:
                return
            if pos < len(chunk):
                pending = chunk[pos : pos + MAX_LINE_BYTES]
        if pending is not None:
            self._line(pending, number + 1, shown)

    def _lines(self, chunk: bytes, start: int, end: int, number: int, shown: str) -> int:
        """Search the whole lines of ``chunk[start:end + 1]`` (``end`` is a newline)."""
        if self.prefilter is not None:
            region = chunk[start : end + 1].replace(b"\r\n", b"\n")
            if self.prefilter.search(region) is None:  # one call, the GIL let go
                return number + chunk.count(b"\n", start, end) + 1
        pos = start
        while pos <= end:
            nl = chunk.find(b"\n", pos, end + 1)
            number += 1
            self._line(chunk[pos:nl], number, shown)
            if self.full:
                break
            pos = nl + 1
            if number % CHECK_EVERY == 0:
                self.check()
        return number

    def _line(self, line: bytes, number: int, shown: str) -> None:
        line = line[:MAX_LINE_BYTES]
        if line.endswith(b"\r"):
            line = line[:-1]
        if self.regex.search(line) is not None:
            text = line[: MAX_LINE_CHARS * 4].decode("utf-8", errors="replace")[:MAX_LINE_CHARS]
            self.matches.append({"path": shown, "line": number, "text": text})

    def report(self) -> ToolResult:
        output = "\n".join(f"{m['path']}:{m['line']}:{m['text']}" for m in self.matches)
        return ok_result(
            output,
            matches=self.matches,
            count=len(self.matches),
            files_searched=self.files,
            limited=self.full,
        )


def _display(path: str, base: str) -> str:
    """``path`` relative to the workspace ``base`` when inside it, else as it is."""
    if path == base:
        return "."
    if path.startswith(base.rstrip(os.sep) + os.sep):
        return path[len(base.rstrip(os.sep)) + 1 :]
    return path


def _grep(
    policy: Policy,
    path: str,
    patterns: tuple[Any, Any | None],
    glob: str | None,
    most: int,
    check: Callable[[], None],
) -> ToolResult:
    regex, prefilter = patterns
    search = _Search(regex, prefilter, most, check)
    base = str(policy.workspace)
    with Confined(policy) as roots:
        shown = roots.shown(path)
        try:
            fd, st = open_readable(roots, path, directory=True)
        except FileNotFoundError:
            raise ToolError(f"{path!r} does not exist") from None
        try:
            if not stat.S_ISDIR(st.st_mode):
                search.file(fd, _display(shown, base))
                return search.report()
            for dir_fd, name, rel in walk.find_files(fd, glob, _SKIP_DIRS, check):
                check()
                try:
                    opened = walk.open_child_file(dir_fd, name)
                except OSError as exc:
                    if exc.errno in (errno.ENOENT, errno.ELOOP, errno.EACCES, errno.ENXIO):
                        continue  # gone, swapped for a link, unreadable, or a socket
                    raise
                if opened is None:
                    continue
                try:
                    if opened[1].st_size <= MAX_FILE_BYTES:
                        search.file(opened[0], _display(os.path.join(shown, rel), base))
                finally:
                    os.close(opened[0])
                if search.full:
                    break
        finally:
            os.close(fd)
    return search.report()


async def _grep_tool(args: dict[str, Any], ctx: CallContext) -> ToolResult:
    patterns = compile_pattern(args["pattern"]), compile_prefilter(args["pattern"])
    return await trio.to_thread.run_sync(
        _grep,
        ctx.policy,
        args.get("path", "."),
        patterns,
        args.get("glob"),
        args.get("max_results", DEFAULT_RESULTS),
        trio.from_thread.check_cancelled,
        abandon_on_cancel=True,
    )


GREP: Final = ToolSpec(
    name="grep",
    description=(
        "Search files for a regular expression (RE2 syntax: like Python's or Perl's, "
        "without backreferences or lookaround; matching takes linear time). path is a "
        "file or directory (default: the workspace); glob filters file names, e.g. '*.py'. "
        "Lines are matched one by one, each up to 1 MiB."
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
