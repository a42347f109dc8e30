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

    The cap is also the worst case for finding a peer that comes back: with the
    defaults (1 s doubling to 10 s, 10 % jitter) a cloud that returns just after
    a failed attempt is found by the next one, at most ``cap·(1 + jitter)`` = 11 s
    later (plus that attempt's own connect time), however long it was away.
    ``worst_wait`` says it for any settings.
    """

    first: float = 1.0
    cap: float = 10.0
    jitter: float = 0.1
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0
    immediate: bool = False

    @property
    def worst_wait(self) -> float:
        """The longest wait ``next_delay`` can give: ``cap`` plus its full jitter."""
        return self.cap * (1 + self.jitter)

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
