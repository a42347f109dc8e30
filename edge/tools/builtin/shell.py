"""``terminal`` and ``code``: commands and source code run as child processes.

Both run contained by the daemon's ``Containment`` (its own cgroup per call,
or the daemon as child subreaper; see ``edge.tools.contain``), in their own
process group, with the daemon's environment minus its secrets, in the
workspace unless ``cwd`` names another directory inside the roots. Whatever a
command starts ends with its call.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any, Final

import trio

from ...errors import ToolError
from ...protocol import ok_result
from ..process import run_captured
from ..registry import CallContext, ToolResult, ToolSpec

#: Upper bound a call may ask for with ``timeout`` (seconds).
MAX_TIMEOUT: Final = 3600

_TIMEOUT_SCHEMA: Final = {
    "type": "number",
    "exclusiveMinimum": 0,
    "maximum": MAX_TIMEOUT,
    "description": "seconds before the call is stopped (default 60)",
}


def _result(exit_code: int, output: str, dropped: int) -> ToolResult:
    extra: dict[str, Any] = {"exit_code": exit_code}
    if dropped:
        extra["dropped_bytes"] = dropped
    return ok_result(output, **extra)


async def _terminal(args: dict[str, Any], ctx: CallContext) -> ToolResult:
    cwd = ctx.policy.resolve(args["cwd"]) if "cwd" in args else ctx.policy.workspace
    if not cwd.is_dir():
        raise ToolError(f"cwd {args.get('cwd', str(cwd))!r} is not a directory")
    shell = shutil.which("bash") or "/bin/sh"
    done = await run_captured(
        [shell, "-c", args["command"]], cwd=cwd, env=ctx.env, processes=ctx.processes
    )
    return _result(done.exit_code, done.output, done.dropped_bytes)


TERMINAL: Final = ToolSpec(
    name="terminal",
    description=(
        "Run a shell command on the user's machine (bash -c) and return its merged "
        "stdout and stderr with the exit code. Runs in the workspace unless cwd is given."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "command": {"type": "string", "minLength": 1},
            "cwd": {"type": "string", "description": "directory inside the allowed roots"},
            "timeout": _TIMEOUT_SCHEMA,
        },
        "required": ["command"],
        "additionalProperties": False,
    },
    run=_terminal,
)

_LANGUAGES: Final = {"python": ".py", "node": ".js", "bash": ".sh"}


def _interpreter(language: str) -> str:
    if language == "python":
        return sys.executable or shutil.which("python3") or "python3"
    found = shutil.which(language)
    if found is None:
        raise ToolError(f"{language} is not installed on this machine")
    return found


async def _code(args: dict[str, Any], ctx: CallContext) -> ToolResult:
    language = args["language"]
    interpreter = _interpreter(language)
    # The source goes to a private file rather than argv: no length limit, and it
    # does not show in the process list.
    with tempfile.TemporaryDirectory(prefix="edge-code-") as tmp:
        script = os.path.join(tmp, "main" + _LANGUAGES[language])
        await trio.Path(script).write_text(args["source"], encoding="utf-8")
        done = await run_captured(
            [interpreter, script], cwd=ctx.policy.workspace, env=ctx.env,
            processes=ctx.processes,
        )
    return _result(done.exit_code, done.output, done.dropped_bytes)


CODE: Final = ToolSpec(
    name="code",
    description=(
        "Run a snippet of python, node or bash source in the workspace and return its "
        "output and exit code."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "language": {"enum": sorted(_LANGUAGES)},
            "source": {"type": "string"},
            "timeout": _TIMEOUT_SCHEMA,
        },
        "required": ["language", "source"],
        "additionalProperties": False,
    },
    run=_code,
)
