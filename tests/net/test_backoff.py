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


def test_the_default_cap_bounds_the_wait_for_a_cloud_that_comes_back() -> None:
    # A cloud back just after a failed attempt is found by the next one: at most
    # cap·(1 + jitter) later, however long it was away.
    plain = Backoff(jitter=0.0)
    assert [plain.next_delay() for _ in range(7)] == [1, 2, 4, 8, 10, 10, 10]
    backoff = Backoff(rng=random.Random(3))
    assert backoff.worst_wait == 11.0
    delays = [backoff.next_delay() for _ in range(200)]
    assert max(delays) <= backoff.worst_wait
    assert max(delays) > 10  # the jitter is there
