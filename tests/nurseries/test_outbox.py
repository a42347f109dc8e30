from __future__ import annotations

import json

import pytest
import trio
import trio.testing

from edge.nurseries.outbox import Entry, Outbox, encode_result


async def send(box: Outbox) -> str:
    """What the tunnel's writer does with the next frame on a socket that works."""
    is_result, text = await box.get()
    box.sent(is_result, text)
    return text


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
        await send(box)
    mark = box.mark()
    assert box.confirm(mark - 1) == 1  # the cloud confirmed r1 only
    box.put_urgent("stale pong")
    box.connection_lost()
    assert await box.get() == (True, "r2")
    assert len(box) == 2  # r2 in the writer's hands, r3 queued: neither confirmed
    assert box.pending() == ["r2", "r3"]


async def test_unsent_result_goes_back_to_the_front() -> None:
    box = Outbox()
    box.put_result("a")
    box.put_result("b")
    is_result, text = await box.get()
    box.unsent(is_result, text)
    assert await box.get() == (True, "a")


async def test_full_outbox_drops_the_oldest_and_counts() -> None:
    gone: list[int] = []
    box = Outbox(max_results=2, on_gone=gone.extend)
    for key, name in enumerate(("a", "b", "c"), start=1):
        box.put_result(name, key)
    assert box.dropped == 1
    assert gone == [1]  # the journal forgets it too
    assert [await box.get() for _ in range(2)] == [(True, "b"), (True, "c")]


async def test_the_bound_counts_unconfirmed_results_too() -> None:
    box = Outbox(max_results=3)
    for name in ("a", "b"):
        box.put_result(name)
        await send(box)
    for name in ("c", "d"):
        box.put_result(name)
    assert len(box) == 3
    assert box.dropped == 1
    assert box.pending() == ["a", "b", "d"]


async def test_restored_results_go_first_and_count_as_resent_if_sent_before() -> None:
    sent: list[int] = []
    box = Outbox(on_sent=sent.append)
    box.put_result("new", 3)
    box.restore([Entry("old-sent", 1, sent=True), Entry("old-unsent", 2)])
    assert [await send(box) for _ in range(3)] == ["old-sent", "old-unsent", "new"]
    assert box.resent == 1
    assert sent == [2, 3]  # first sends only: the journal marks those


async def test_resent_counts_results_sent_again_after_a_loss() -> None:
    box = Outbox()
    for name in ("a", "b"):
        box.put_result(name)
    await send(box)
    await send(box)
    box.connection_lost()
    await send(box)
    await send(box)
    assert box.resent == 2
    box.confirm(box.mark())
    assert len(box) == 0


async def test_confirm_reports_the_keys_that_left() -> None:
    gone: list[int] = []
    box = Outbox(on_gone=gone.extend)
    for key in (5, 6, 7):
        box.put_result(f"r{key}", key)
    await send(box)
    await send(box)
    box.confirm(box.mark())
    assert gone == [5, 6]
    assert box.pending() == ["r7"]


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


async def test_wait_unconfirmed_and_wait_confirmed() -> None:
    box = Outbox()
    box.put_result("a")
    async with trio.open_nursery() as nursery:
        done: list[str] = []

        async def waiter(name: str, wait: object) -> None:
            await wait()  # type: ignore[operator]
            done.append(name)

        nursery.start_soon(waiter, "unconfirmed", box.wait_unconfirmed)
        nursery.start_soon(waiter, "confirmed", box.wait_confirmed)
        await trio.testing.wait_all_tasks_blocked()
        assert done == []
        await send(box)
        await trio.testing.wait_all_tasks_blocked()
        assert done == ["unconfirmed"]
        box.confirm(box.mark())
    assert done == ["unconfirmed", "confirmed"]


@pytest.mark.parametrize(
    ("value", "problem"),
    [({1, 2}, "set"), (b"raw", "bytes"), (float("nan"), ""), (float("-inf"), "")],
)
def test_a_result_json_cannot_carry_becomes_an_error_result(value: object, problem: str) -> None:
    frame = json.loads(encode_result("c1", {"output": "x", "extra": [{"deep": value}]}))
    assert frame["id"] == "c1"
    assert set(frame["result"]) == {"error"}
    assert "not valid JSON" in frame["result"]["error"]
    assert problem in frame["result"]["error"]


def test_nan_in_a_string_is_only_text() -> None:
    text = encode_result(7, {"output": "NaN and Infinity are words"})
    assert json.loads(text) == {
        "jsonrpc": "2.0", "id": 7, "result": {"output": "NaN and Infinity are words"}
    }


async def test_a_broken_urgent_frame_is_dropped() -> None:
    box = Outbox()
    box.put_urgent_frame("progress", lambda: {"bad": object()})
    box.put_urgent_frame("progress", lambda: {"good": 1})
    assert box.urgent_backlog() == 1
    assert await box.get() == (False, '{"good":1}')
