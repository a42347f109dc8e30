from __future__ import annotations

import random

from edge.net.backoff import Backoff


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    backoff = Backoff(first=1.0, cap=30.0, jitter=0.0)
    assert [backoff.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_reset_makes_the_next_attempt_immediate_then_starts_over() -> None:
    backoff = Backoff(first=1.0, cap=30.0, jitter=0.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert [backoff.next_delay() for _ in range(3)] == [0.0, 1, 2]


def test_jitter_stays_within_its_share() -> None:
    backoff = Backoff(first=1.0, cap=30.0, jitter=0.1, rng=random.Random(7))
    for expected in [1, 2, 4, 8, 16, 30, 30]:
        delay = backoff.next_delay()
        assert expected <= delay <= expected * 1.1
