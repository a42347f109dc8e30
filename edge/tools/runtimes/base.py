"""The one interface every runtime of declared tools has, and what the process runtimes share.

A runtime (``node``, ``native``, ``wasm``) checks a manifest once, when the
tools are loaded (``validate``: a problem in words, or ``None``), and runs one
call (``run``). ``run`` raises ``ToolError`` for a failed call (the executor
makes it an error result) and stops its work promptly when cancelled: the
executor's timeout and the cloud's cancel are both trio cancellation.

The node and native runtimes both run a process that speaks the stdio
contract (``edge.tools.runtimes.stdio``); ``run_stdio`` is that, contained by
the call's ``Containment`` like a ``terminal`` command, in the tool's own
directory, with an environment of a few basics and the names the manifest
lists (``tool_environment``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

from ...config import TOKEN_ENV
from ...errors import ToolError
from ..process import MAX_CAPTURE_BYTES, run_piped
from .stdio import call_input, parse_output

if TYPE_CHECKING:
    from ..policy import Policy
    from ..registry import CallContext, ToolResult
    from .manifest import ToolManifest

#: Variables every process tool gets from the daemon's environment, when set.
BASIC_ENV: Final = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
#: Set for every process tool: the policy's workspace, where the user's files are.
WORKSPACE_ENV: Final = "EDGE_WORKSPACE"


class Runtime(Protocol):
    """How declared tools of one kind are checked and run."""

    #: ``node``, ``native`` or ``wasm``: the ``runtime`` of the manifests it runs.
    kind: str

    def validate(self, manifest: ToolManifest, policy: Policy) -> str | None:
        """What keeps ``manifest`` from running here, in words, or ``None`` if it can run.

        Called once when tools are loaded; it must not block for long (a wasm
        module's compile is allowed: it is cached).
        """
        ...

    async def run(
        self, manifest: ToolManifest, args: dict[str, Any], ctx: CallContext
    ) -> ToolResult:
        """Run one call with ``args`` (already checked against the schema).

        Raises:
            ToolError: the call failed; the message says why.
        """
        ...


def entry_problem(manifest: ToolManifest) -> str | None:
    """Why the manifest's entry is no file to run, or ``None``."""
    entry = manifest.entry
    shown = entry.relative_to(manifest.directory).as_posix()
    try:
        info = entry.stat()
    except FileNotFoundError:
        return f"entry {shown} does not exist in {manifest.directory}"
    except OSError as exc:
        return f"entry {entry} cannot be read: {exc.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return f"entry {entry} is not a regular file"
    return None


def tool_environment(manifest: ToolManifest, ctx: CallContext) -> dict[str, str]:
    """The environment of a tool's process: ``BASIC_ENV``, the manifest's ``env`` names
    (those set in the daemon's environment) and ``EDGE_WORKSPACE``; never the token."""
    source = ctx.env
    env = {name: source[name] for name in (*BASIC_ENV, *manifest.env) if name in source}
    env.update({k: v for k, v in source.items() if k.startswith("LC_")})
    env.setdefault("PATH", os.defpath)
    env[WORKSPACE_ENV] = str(ctx.policy.workspace)
    env.pop(TOKEN_ENV, None)
    return env


async def run_stdio(
    manifest: ToolManifest,
    argv: Sequence[str],
    args: dict[str, Any],
    ctx: CallContext,
    env: Mapping[str, str] | None = None,
) -> ToolResult:
    """Run ``argv`` in the tool's directory, the call on its stdin, its stdout the result.

    Raises:
        ToolError: the process could not start, failed, or answered badly.
    """
    try:
        piped = await run_piped(
            argv,
            stdin=call_input(manifest, args, ctx.call_id),
            cwd=manifest.directory,
            env=tool_environment(manifest, ctx) if env is None else env,
            processes=ctx.processes,
        )
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ToolError(f"{manifest.name}: cannot start {argv[0]}: {reason}") from None
    if piped.stdout_dropped:
        raise ToolError(
            f"{manifest.name}: the answer on stdout is larger than {MAX_CAPTURE_BYTES} bytes"
        )
    return parse_output(manifest.name, piped.stdout, piped.stderr, piped.exit_code)
