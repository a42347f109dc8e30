"""The one path every tool call takes, from the tunnel or from ``edge tools call``.

lookup → local policy → cloud approval → schema → run under a timeout → map
errors to results → truncate. Every failure is a result with ``"error"``; only
cancellation propagates.

Every call, whatever brought it, ends with one INFO line on the ``edge.tools.execute``
logger and, when the executor has a ``CallLog`` (``edge.tools.audit``), a record
there; both are written in a ``finally``, so a cancelled call has them too::

    call 17 terminal ok in 0.532 s, 1234 chars
    call 18 file_read timeout in 60.002 s, 30 chars: limit 60 s
    call 19 nope refused in 0.000 s, 19 chars: unknown tool 'nope'

The line holds the call's id, tool, outcome (``ok``, ``error``, ``timeout``,
``cancelled``, ``refused``), duration and size (the characters of the output, or of
the error text the caller got when there is no output), never its args or output;
for a call that did not succeed, edge's own words for why (a refusal, a timeout,
the kind of error), never a tool's error text, which may quote what it read. The
same fields go with the log record as ``edge_call`` (``edge.logs`` writes them out
in ``--log-format json``). A call turned away before it reaches ``call`` (the
workers are full, edge is updating) is logged and recorded by ``refuse``, one
cancelled while it waited for a slot by ``note``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import trio

from ..errors import PolicyError, ToolError, ToolTimeout
from ..protocol import error_result, truncate_result
from .audit import CallLog, Outcome, label
from .contain import Containment
from .policy import Policy
from .registry import CallContext, ToolRegistry, ToolResult, ToolSpec

log = logging.getLogger(__name__)

#: Per-call timeout when neither the call nor the config names one (seconds).
DEFAULT_TIMEOUT: Final = 60.0
#: Longest reason a call's log line and record give for how it ended (characters).
WHY_LIMIT: Final = 200


@dataclass(frozen=True, slots=True)
class Executor:
    """Everything a call needs besides its own args; built by the daemon."""

    registry: ToolRegistry
    policy: Policy
    env: Mapping[str, str]
    default_timeout: float = DEFAULT_TIMEOUT
    #: What holds the processes of ``terminal`` and ``code`` calls (``None``: process groups).
    processes: Containment | None = None
    #: Where every call is recorded (``GET /calls``); ``None``: only logged.
    calls: CallLog | None = None

    def refusal(self, tool: str, approved: frozenset[str] | None) -> str | None:
        """Why ``tool`` may not run now, or ``None`` if it may.

        ``approved`` is the cloud's whitelist; ``None`` means no cloud is
        involved (a local ``edge tools call``), so only the local policy counts.
        """
        if tool not in self.registry:
            return f"unknown tool {tool!r}"
        if not self.policy.allows_tool(tool):
            return f"tool {tool!r} is not allowed by the local policy"
        if approved is not None and tool not in approved:
            return f"tool {tool!r} is not approved by the cloud"
        return None

    async def call(
        self,
        tool: str,
        args: dict[str, Any],
        *,
        approved: frozenset[str] | None,
        call_id: str | int | None = None,
        progress: Callable[[float, float | None, str | None], None] | None = None,
    ) -> ToolResult:
        """Run one call and return its result (never raises but ``Cancelled``).

        The call is logged and recorded however it ends (see the module docstring).
        """
        spec = self.registry.get(tool)
        calls = self.calls
        record = None if calls is None else calls.begin(call_id, tool, spec.source if spec else "")
        began = trio.current_time()
        outcome: Outcome = "cancelled"
        why: str | None = None
        result: ToolResult | None = None
        try:
            result, outcome, why = await self._call(spec, tool, args, approved, call_id, progress)
            return result
        finally:
            chars = _chars(result)
            seconds = trio.current_time() - began
            if why is not None and len(why) > WHY_LIMIT:  # a refusal quotes a cloud's name
                why = why[:WHY_LIMIT] + "…"
            if record is not None and calls is not None:
                calls.end(record, outcome, chars, why, seconds)
            if log.isEnabledFor(logging.INFO):
                ident = _ident(call_id) if record is None else record.id
                _log_call(ident, tool, outcome, seconds, chars, why)

    def refuse(
        self, tool: str, message: str, *, call_id: str | int | None = None, **fields: Any
    ) -> ToolResult:
        """A call turned away before it could run (``message``: edge's own reason, such as
        "busy"): logged and recorded as ``refused``; its error result, with ``fields``."""
        self.note(tool, "refused", message, call_id=call_id)
        return error_result(message, **fields)

    def note(
        self, tool: str, outcome: Outcome, why: str | None, *, call_id: str | int | None = None
    ) -> None:
        """Log and record a call that ended before it reached ``call`` (refused, or cancelled
        while it waited for a slot); ``why`` in edge's own words."""
        spec = self.registry.get(tool)
        source = spec.source if spec else ""
        if why is not None and len(why) > WHY_LIMIT:
            why = why[:WHY_LIMIT] + "…"
        ident = None
        if self.calls is not None:
            ident = self.calls.add(call_id, tool, source, outcome, why).id
        if log.isEnabledFor(logging.INFO):
            _log_call(ident or _ident(call_id), tool, outcome, 0.0, 0, why)

    async def _call(
        self,
        spec: ToolSpec | None,
        tool: str,
        args: dict[str, Any],
        approved: frozenset[str] | None,
        call_id: str | int | None,
        progress: Callable[[float, float | None, str | None], None] | None,
    ) -> tuple[ToolResult, Outcome, str | None]:
        """The call's result, its outcome, and why it did not succeed in words safe to log."""
        refusal = self.refusal(tool, approved)
        if refusal is not None:
            return error_result(refusal), "refused", refusal
        problem = self.registry.validate(tool, args)
        if problem is not None:
            # The schema's message may quote an arg's value: the log gets no more than this.
            return error_result(problem), "refused", "invalid args"
        assert spec is not None
        ctx = CallContext(
            call_id=call_id, policy=self.policy, env=self.env, progress=progress,
            processes=self.processes,
        )
        try:
            timeout = self._timeout(spec, args)
            with trio.move_on_after(timeout) as scope:
                result = await spec.run(args, ctx)
            if scope.cancelled_caught:
                raise ToolTimeout(f"{tool} timed out after {timeout:g} s", timeout)
        except ToolTimeout as exc:
            return error_result(str(exc), timed_out=True), "timeout", f"limit {exc.seconds:g} s"
        except (ToolError, PolicyError) as exc:
            return error_result(str(exc)), "error", type(exc).__name__
        except OSError as exc:
            return error_result(_describe_os_error(exc)), "error", _os_error_kind(exc)
        except Exception as exc:
            log.exception("tool %s failed unexpectedly", tool)
            message = f"internal error in {tool}: {type(exc).__name__}: {exc}"
            return error_result(message), "error", f"internal error: {type(exc).__name__}"
        result = truncate_result(result)
        if "error" in result:
            if result.get("timed_out"):
                return result, "timeout", "the tool timed out"
            return result, "error", "the tool answered with an error"
        return result, "ok", None

    def _timeout(self, spec: ToolSpec, args: Mapping[str, Any]) -> float:
        """The tool's own timeout, else the call's ``timeout`` arg, else the default.

        Raises:
            ToolError: the ``timeout`` arg is not a positive number of seconds.
        """
        if spec.timeout is not None:
            return spec.timeout
        value = args.get("timeout", self.default_timeout)
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise ToolError(f'"timeout" must be a number of seconds, not {value!r}') from None
        if not seconds > 0:
            raise ToolError(f'"timeout" must be a positive number of seconds, not {value!r}')
        return seconds


def _chars(result: ToolResult | None) -> int:
    """The size of a result as delivered: its output's characters, else its error's."""
    if result is None:
        return 0
    text = result.get("output")
    if not isinstance(text, str):
        text = result.get("error")
    return len(text) if isinstance(text, str) else 0


def _ident(call_id: object) -> str:
    """A call's id as its log line shows it (``-``: it has none)."""
    return "-" if call_id is None else label(call_id)


def _log_call(
    ident: str, tool: str, outcome: Outcome, seconds: float, chars: int, why: str | None
) -> None:
    """The one INFO line of a call, with its fields as ``edge_call`` for structured logs."""
    name = label(tool)
    fields = {"id": ident, "tool": name, "seconds": round(seconds, 3), "outcome": outcome,
              "chars": chars}  # fmt: skip
    if why is not None and outcome != "ok":
        fields["error"] = why
        log.info("call %s %s %s in %.3f s, %d chars: %s", ident, name, outcome, seconds, chars,
                 why, extra={"edge_call": fields})  # fmt: skip
    else:
        log.info("call %s %s %s in %.3f s, %d chars", ident, name, outcome, seconds, chars,
                 extra={"edge_call": fields})  # fmt: skip


def _os_error_kind(exc: OSError) -> str:
    """An ``OSError`` in words that name no path: its class and errno name."""
    import errno

    name = errno.errorcode.get(exc.errno or 0)
    return f"{type(exc).__name__} ({name})" if name else type(exc).__name__


def _describe_os_error(exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        return f"{reason}: {exc.filename}"
    return reason
