"""Watched: waiting for a state without polling."""

from __future__ import annotations

import trio

from edge.watch import Watched


async def test_wait_for_returns_at_once_when_it_holds() -> None:
    value = Watched(3)
    assert await value.wait_for(lambda v: v > 2) == 3


async def test_wait_for_wakes_on_the_change_that_satisfies_it(autojump_clock: trio.abc.Clock) -> None:
    value = Watched("connecting")
    seen: list[str] = []

    async def waiter() -> None:
        seen.append(await value.wait_for(lambda v: v == "connected"))
        seen.append(str(trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(1)
        value.value = "still connecting"
        await trio.sleep(1)
        value.value = "connected"
        value.value = "disconnected"  # undone before the waiter runs: it still saw it
    assert seen == ["connected", "2.0"]


async def test_a_cancelled_waiter_leaves_nothing_behind(autojump_clock: trio.abc.Clock) -> None:
    value = Watched(0)
    with trio.move_on_after(1):
        await value.wait_value(1)
    assert value._waiters == {}
    value.value = 1
    assert await value.wait_value(1) == 1
