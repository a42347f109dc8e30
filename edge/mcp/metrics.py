"""Per-tool and per-server figures, and the server status derived from them.

Status of a server:

- ``inactive``: disabled, not connected yet, or an HTTP session closed after
  ``idleTimeout`` without calls (the next call reconnects);
- ``error``: not connected because the last attempt failed (edge is backing off
  and retrying), or parked after a crash loop (``Timing.crash_loop_failures`` failures
  within ``crash_loop_window`` seconds, no session lasting ``stable_after``
  seconds in between); a parked server is tried again after ``park_seconds``;
- ``degraded``: connected, but at least ``DEGRADED_RATE`` of its last
  ``RECENT_REQUESTS`` requests failed (at least ``DEGRADED_MIN`` of them);
- ``active``: connected and answering.

A request fails when the server does not answer it properly: a protocol
error, a timeout, or the connection ending. A tool answering ``isError`` is a
failure of that tool (its own figures) but the server itself answered.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass, field
from typing import Any, Final

#: Requests the degraded rule looks at (the last ones).
RECENT_REQUESTS: Final = 20
#: Share of the recent requests that failed, at least, for ``degraded``.
DEGRADED_RATE: Final = 0.25
#: Recent requests that failed, at least, for ``degraded``.
DEGRADED_MIN: Final = 4
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
    requests: int = 0
    errors: int = 0
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    connected_since: float | None = None  # time.monotonic()
    recent: collections.deque[bool] = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_REQUESTS)
    )

    def request(self, ok: bool, error: str | None = None) -> None:
        self.requests += 1
        self.recent.append(ok)
        if not ok:
            self.errors += 1
            self.problem(error or "request failed")

    def problem(self, error: str) -> None:
        self.last_error = error
        self.last_error_at = time.time()

    def degraded(self) -> bool:
        failed = sum(1 for ok in self.recent if not ok)
        return failed >= DEGRADED_MIN and failed / len(self.recent) >= DEGRADED_RATE

    def uptime(self) -> float | None:
        if self.connected_since is None:
            return None
        return round(time.monotonic() - self.connected_since, 3)
