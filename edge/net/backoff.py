"""Reconnect delays: exponential from ``first`` to ``cap`` plus jitter.

Plain code with an injected random source, so tests can check exact delays.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for successive failed attempts.

    After ``reset()`` (a connection that completed its handshake and stayed up)
    the next attempt goes at once; failures then wait ``first``, ``2·first``, ...
    up to ``cap`` seconds, each plus up to ``jitter`` of itself so many edges
    don't reconnect in step.
    """

    first: float = 1.0
    cap: float = 30.0
    jitter: float = 0.1
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0
    immediate: bool = False

    def reset(self) -> None:
        self.failures = 0
        self.immediate = True

    def next_delay(self) -> float:
        """The wait before the next attempt; counts one more failure."""
        if self.immediate:
            self.immediate = False
            return 0.0
        base = min(self.cap, self.first * 2 ** min(self.failures, 32))
        self.failures += 1
        return float(base + self.rng.uniform(0, self.jitter * base))
