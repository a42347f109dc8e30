"""Every delay an MCP server's supervision uses, as defaults and as one overridable ``Timing``.

The restart defaults are the supervisor's own (``edge.supervise``): a crash-loop
window of 5 failures in 60 s, a session of 30 s counting as stable, a park of
5 minutes, reconnect delays from 0.5 s doubling to 30 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ..supervise import (
    BACKOFF_CAP,
    BACKOFF_FIRST,
    PARK_SECONDS,
    RESTART_FAILURES,
    RESTART_WINDOW,
    STABLE_AFTER,
    RestartPolicy,
)
from .metrics import HealthRule

#: Seconds a server has to answer ``initialize``.
INIT_TIMEOUT: Final = 20.0
#: Seconds between pings of a connected server.
PING_INTERVAL: Final = 15.0
#: Seconds a server has to answer a ping before edge reconnects.
PING_TIMEOUT: Final = 10.0
#: Seconds a tool list is kept before it is fetched again.
TOOLS_TTL: Final = 300.0

@dataclass(frozen=True, slots=True)
class Timing:
    """Overridable in tests: every delay the supervision of one server uses."""

    init_timeout: float = INIT_TIMEOUT
    ping_interval: float = PING_INTERVAL
    ping_timeout: float = PING_TIMEOUT
    tools_ttl: float = TOOLS_TTL
    crash_loop_failures: int = RESTART_FAILURES
    crash_loop_window: float = RESTART_WINDOW
    stable_after: float = STABLE_AFTER
    park_seconds: float = PARK_SECONDS
    backoff_first: float = BACKOFF_FIRST
    backoff_cap: float = BACKOFF_CAP
    #: How recent failures set a connected server's status, unless its entry says
    #: (config.toml's ``[mcp]`` keys; ``edge.mcp.metrics``).
    health: HealthRule = field(default_factory=HealthRule)

    def restart_policy(self) -> RestartPolicy:
        """The restart part, for ``edge.supervise``."""
        return RestartPolicy(
            failures=self.crash_loop_failures,
            window=self.crash_loop_window,
            stable_after=self.stable_after,
            park_seconds=self.park_seconds,
            backoff_first=self.backoff_first,
            backoff_cap=self.backoff_cap,
        )
