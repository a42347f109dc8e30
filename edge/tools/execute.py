"""The one path every tool call takes, from the tunnel or from ``edge tools call``.

lookup → local policy → cloud approval → schema → run under a timeout → map
errors to results → truncate. Every failure is a result with ``"error"``; only
cancellation propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import trio

from ..errors import PolicyError, ToolError, ToolTimeout
from ..protocol import error_result, truncate_result
from .contain import Containment
from .policy import Policy
from .registry import CallContext, ToolRegistry, ToolResult, ToolSpec

log = logging.getLogger(__name__)

#: Per-call timeout when neither the call nor the config names one (seconds).
DEFAULT_TIMEOUT: Final = 60.0


@dataclass(frozen=True, slots=True)
class Executor:
    """Everything a call needs besides its own args; built by the daemon."""

    registry: ToolRegistry
    policy: Policy
    env: Mapping[str, str]
    default_timeout: float = DEFAULT_TIMEOUT
    #: What holds the processes of ``terminal`` and ``code`` calls (``None``: process groups).
    processes: Containment | None = None

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
        """Run one call and return its result (never raises but ``Cancelled``)."""
        refusal = self.refusal(tool, approved)
        if refusal is not None:
            return error_result(refusal)
        problem = self.registry.validate(tool, args)
        if problem is not None:
            return error_result(problem)
        spec = self.registry.get(tool)
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
            return error_result(str(exc), timed_out=True)
        except (ToolError, PolicyError) as exc:
            return error_result(str(exc))
        except OSError as exc:
            return error_result(_describe_os_error(exc))
        except Exception as exc:
            log.exception("tool %s failed unexpectedly", tool)
            return error_result(f"internal error in {tool}: {type(exc).__name__}: {exc}")
        return truncate_result(result)

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


def _describe_os_error(exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        return f"{reason}: {exc.filename}"
    return reason
