"""Per-tool and per-server figures, and the server status derived from them.

Status of a server:

- ``inactive``: disabled, not connected yet, or an HTTP session closed after
  ``idleTimeout`` without calls (the next call reconnects);
- ``error``: not connected because the last attempt failed (edge is backing off
  and retrying), or parked after a crash loop (``Timing.crash_loop_failures`` failures
  within ``crash_loop_window`` seconds, no session lasting ``stable_after``
  seconds in between); a parked server is tried again after ``park_seconds``;
- ``error`` also when connected, but at least ``HealthRule.error_rate`` of its last
  ``HealthRule.window`` requests failed (at least ``min_failures`` of them);
- ``degraded``: connected, but at least ``HealthRule.degraded_rate`` of those failed;
- ``active``: connected and answering (a server goes back to ``active`` once its
  recent requests succeed again: the window slides).

The rule's defaults are the module constants; config.toml's ``[mcp]`` sets them for
every server and an ``mcp.json`` entry's ``health`` for one.

A request fails when the server does not answer it properly: a protocol
error, a timeout, or the connection ending. A tool answering ``isError`` is a
failure of that tool (its own figures) but the server itself answered.
"""

from __future__ import annotations

import collections
import collections.abc
import math
import time
from dataclasses import dataclass, field
from typing import Any, Final

#: Requests the health rule looks at (the last ones).
RECENT_REQUESTS: Final = 20
#: Share of the recent requests that failed, at least, for ``degraded``.
DEGRADED_RATE: Final = 0.25
#: Share of the recent requests that failed, at least, for ``error``.
ERROR_RATE: Final = 0.75
#: Recent requests that failed, at least, for either.
DEGRADED_MIN: Final = 4


@dataclass(frozen=True, slots=True)
class HealthRule:
    """How a connected server's recent failures set its status."""

    #: The last requests looked at.
    window: int = RECENT_REQUESTS
    #: Failed share for ``degraded``, and for ``error`` (1.0: never).
    degraded_rate: float = DEGRADED_RATE
    error_rate: float = ERROR_RATE
    #: Failed requests at least, for either.
    min_failures: int = DEGRADED_MIN

    def judge(self, recent: collections.abc.Iterable[bool]) -> str:
        """``active``, ``degraded`` or ``error`` for the outcomes of the last requests."""
        outcomes = list(recent)[-self.window :]
        failed = sum(1 for ok in outcomes if not ok)
        if not outcomes or failed < self.min_failures:
            return "active"
        share = failed / len(outcomes)
        if share >= self.error_rate:
            return "error"
        return "degraded" if share >= self.degraded_rate else "active"

    def describe(self, recent: collections.abc.Iterable[bool]) -> str:
        """Why the rule says what it says: ``5 of the last 20 requests failed``."""
        outcomes = list(recent)[-self.window :]
        failed = sum(1 for ok in outcomes if not ok)
        return f"{failed} of the last {len(outcomes)} requests failed"
#: Latencies kept per tool for its p95.
LATENCY_SAMPLES: Final = 256


def _p95(samples: collections.deque[float]) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


@dataclass(slots=True)
class ToolMetrics:
    calls: int = 0
    successes: int = 0
    failures: int = 0
    total_seconds: float = 0.0
    latencies: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=LATENCY_SAMPLES)
    )

    def record(self, seconds: float, ok: bool) -> None:
        self.calls += 1
        if ok:
            self.successes += 1
        else:
            self.failures += 1
        self.total_seconds += seconds
        self.latencies.append(seconds)

    def to_json(self) -> dict[str, Any]:
        p95 = _p95(self.latencies)
        return {
            "calls": self.calls,
            "successes": self.successes,
            "failures": self.failures,
            "avgMs": round(self.total_seconds / self.calls * 1000, 3) if self.calls else None,
            "p95Ms": None if p95 is None else round(p95 * 1000, 3),
        }


@dataclass(slots=True)
class ServerMetrics:
    rule: HealthRule = field(default_factory=HealthRule)
    requests: int = 0
    errors: int = 0
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    connected_since: float | None = None  # time.monotonic()
    recent: collections.deque[bool] = field(default_factory=collections.deque)

    def __post_init__(self) -> None:
        self.recent = collections.deque(self.recent, maxlen=self.rule.window)

    def request(self, ok: bool, error: str | None = None) -> None:
        self.requests += 1
        self.recent.append(ok)
        if not ok:
            self.errors += 1
            self.problem(error or "request failed")

    def problem(self, error: str) -> None:
        self.last_error = error
        self.last_error_at = time.time()

    def health(self) -> str:
        """``active``, ``degraded`` or ``error`` by the rule, for a connected server."""
        return self.rule.judge(self.recent)

    def degraded(self) -> bool:
        return self.health() != "active"

    def uptime(self) -> float | None:
        if self.connected_since is None:
            return None
        return round(time.monotonic() - self.connected_since, 3)
