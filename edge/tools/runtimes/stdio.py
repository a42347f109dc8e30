"""The one contract between edge and a declared tool: a JSON line in, a JSON object out.

Every runtime (node, native, wasm) speaks it the same way:

stdin
    One line of UTF-8 JSON, then end of file::

        {"tool": "greet", "args": {"name": "Ada"}, "callId": 42}

    ``args`` are the call's args, already checked against the tool's schema;
    ``callId`` is the cloud's id of the call (``null`` for a local call). The
    JSON is ASCII-only (other characters as ``\\u`` escapes), so any JSON parser
    reads it whatever its idea of the encoding.
stdout
    Exactly one JSON object, the result (whitespace around it is fine)::

        {"output": "Hello, Ada!"}
        {"output": "3 words", "words": 3}
        {"error": "no such file: notes.txt"}

    A result with ``"error"`` (a string; ``null`` counts as none) is a
    failed call. Otherwise it is a success: ``"output"`` (a string) is what
    the model reads, and any other field goes along as it is; without
    ``"output"`` edge sets it to the object's JSON text. Anything else on
    stdout (a log line, two objects, an array) fails the call: log to stderr.
stderr
    Free text for people. When the tool exits with a non-zero status, the last
    lines of stderr are the error message (a JSON ``"error"`` on stdout wins
    over them).
exit status
    0 for a result. Non-zero fails the call (unless stdout holds an
    ``"error"``, which is the message then).

These are plain functions on bytes (no trio): the runtimes run the process.
"""

from __future__ import annotations

import json
import signal
from typing import TYPE_CHECKING, Any, Final

from ...errors import ToolError
from ...protocol.strict import loads as strict_loads

if TYPE_CHECKING:
    from ..registry import ToolResult
    from .manifest import ToolManifest

#: How much of a bad answer is quoted in the error (characters).
QUOTE_CHARS: Final = 80
#: How many of stderr's last lines make the message of a failed exit, and how long it may be.
STDERR_LINES: Final = 3
STDERR_CHARS: Final = 500


def call_input(manifest: ToolManifest, args: dict[str, Any], call_id: str | int | None) -> bytes:
    """The line a tool reads on stdin: ``{"tool", "args", "callId"}`` and a newline."""
    line = json.dumps({"tool": manifest.name, "args": args, "callId": call_id}, ensure_ascii=True)
    return line.encode("ascii") + b"\n"


def parse_output(tool: str, stdout: bytes, stderr: bytes, exit_code: int | None) -> ToolResult:
    """The result a tool's stdout holds, after its exit with ``exit_code`` (``None``: unknown).

    Raises:
        ToolError: the tool answered with ``"error"``, exited with a non-zero
            status, or printed something that is not one JSON object.
    """
    answer, problem = _decode(stdout)
    if isinstance(answer, dict) and "error" in answer and answer["error"] is None:
        answer = {k: v for k, v in answer.items() if k != "error"}  # "error": null is no error
    if isinstance(answer, dict) and "error" in answer:
        error = answer["error"]
        if not isinstance(error, str):
            raise ToolError(f'{tool}: "error" must be a string, not {_json_type(error)}')
        raise ToolError(f"{tool}: {error}")
    if exit_code is not None and exit_code != 0:
        said = _stderr_tail(stderr) or (f": {_quote(stdout)}" if stdout.strip() else "")
        raise ToolError(f"{tool} {_exit_text(exit_code)}{said}")
    if problem is not None:
        raise ToolError(f"{tool}: {problem}{_stderr_tail(stderr)}")
    if not isinstance(answer, dict):
        raise ToolError(
            f"{tool}: the answer on stdout must be a JSON object, not {_json_type(answer)} "
            f"({_quote(stdout)})"
        )
    if "output" not in answer:
        return {"output": json.dumps(answer, ensure_ascii=False), **answer}
    if not isinstance(answer["output"], str):
        raise ToolError(f'{tool}: "output" must be a string, not {_json_type(answer["output"])}')
    return answer


def _decode(stdout: bytes) -> tuple[Any, str | None]:
    """stdout's JSON value, or ``None`` and what is wrong with it."""
    if not stdout.strip():
        return None, "printed nothing on stdout (the answer must be one JSON object)"
    try:
        text = stdout.decode("utf-8")
    except UnicodeDecodeError:
        return None, f"stdout is not UTF-8 ({_quote(stdout)})"
    try:
        return strict_loads(text), None
    except ValueError as exc:
        return None, (
            f"stdout is not one JSON object ({exc}; it begins {_quote(stdout)}); "
            "log to stderr, not stdout"
        )


def _quote(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace").strip()
    shown = text[:QUOTE_CHARS]
    return repr(shown) + ("..." if len(text) > QUOTE_CHARS else "")


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with status {code}"


def _stderr_tail(stderr: bytes) -> str:
    """``: <the last lines of stderr>``, bounded, or "" when it is empty."""
    lines = [
        line.strip()
        for line in stderr.decode("utf-8", errors="replace").splitlines()
        if line.strip()
    ]
    if not lines:
        return ""
    tail = " | ".join(lines[-STDERR_LINES:])
    if len(tail) > STDERR_CHARS:
        tail = "..." + tail[-STDERR_CHARS:]
    return f": {tail}"


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
