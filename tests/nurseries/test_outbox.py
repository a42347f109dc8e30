from __future__ import annotations

import trio
import trio.testing

from edge.nurseries.outbox import Outbox


async def test_urgent_frames_go_first() -> None:
    box = Outbox()
    box.put_result("r1")
    box.put_urgent("pong")
    assert await box.get() == (False, "pong")
    assert await box.get() == (True, "r1")


async def test_unconfirmed_results_are_requeued_in_order_after_a_loss() -> None:
    box = Outbox()
    for name in ("r1", "r2", "r3"):
        box.put_result(name)
    for _ in range(2):
        is_result, text = await box.get()
        box.sent(is_result, text)
    mark = box.mark()
    box.confirm(mark - 1)  # the cloud confirmed r1 only
    box.put_urgent("stale pong")
    box.connection_lost()
    assert [await box.get() for _ in range(2)] == [(True, "r2"), (True, "r3")]
    assert len(box) == 0


async def test_unsent_result_goes_back_to_the_front() -> None:
    box = Outbox()
    box.put_result("a")
    box.put_result("b")
    is_result, text = await box.get()
    box.unsent(is_result, text)
    assert await box.get() == (True, "a")


async def test_full_outbox_drops_the_oldest_and_counts() -> None:
    box = Outbox(max_results=2)
    for name in ("a", "b", "c"):
        box.put_result(name)
    assert box.dropped == 1
    assert [await box.get() for _ in range(2)] == [(True, "b"), (True, "c")]


async def test_get_waits_and_wait_sent_returns_when_empty() -> None:
    box = Outbox()
    got: list[tuple[bool, str]] = []
    async with trio.open_nursery() as nursery:

        async def reader() -> None:
            got.append(await box.get())

        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        box.put_result("late")
    assert got == [(True, "late")]
    with trio.move_on_after(0.05) as waiting:
        await box.wait_sent()  # taken by the writer, not yet written
    assert waiting.cancelled_caught
    box.sent(*got[0])
    with trio.fail_after(1):
        await box.wait_sent()
