"""The tunnel's journal over a real store in a temporary state directory."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from edge.nurseries.journal import ACCEPT_DELAY, INTERRUPTED, Journal
from edge.nurseries.outbox import Outbox, encode_result
from edge.store import DB_FILE, Store, open_store


@asynccontextmanager
async def running(state: Path, **kwargs: Any) -> AsyncIterator[tuple[Journal, Store]]:
    """A journal with its writer task, over the store in ``state``, as the tunnel runs it."""
    async with open_store(state / DB_FILE) as store, trio.open_nursery() as nursery:
        journal = Journal(store, **kwargs)
        nursery.start_soon(journal.run)
        try:
            yield journal, store
        finally:
            nursery.cancel_scope.cancel()
            await journal.close()


async def rows(store: Store, table: str) -> list[tuple[Any, ...]]:
    columns = {"journal_calls": "call_id, tool", "journal_results": "call_id, frame, sent"}[table]
    return await store.read(lambda c: c.execute(f"SELECT {columns} FROM {table}").fetchall())


async def send_all(box: Outbox) -> list[Any]:
    """Send every queued result as the writer does; the frames, decoded."""
    frames = []
    while len(box) > box.unconfirmed:
        is_result, text = await box.get()
        box.sent(is_result, text)
        frames.append(json.loads(text))
    return frames


def result(call_id: str | int, output: str) -> str:
    return encode_result(call_id, {"output": output})


async def test_accept_result_confirm(tmp_path: Path) -> None:
    async with running(tmp_path) as (journal, store):
        journal.accept("a", "terminal")
        journal.accept(7, "grep")
        await journal.flush()
        assert sorted(await rows(store, "journal_calls")) == [('"a"', "terminal"), ("7", "grep")]
        journal.put_result("a", result("a", "done"))
        assert len(journal.outbox) == 1  # ready to send at once, committed beside it
        assert len(journal) == 1
        await journal.wait_released()
        assert await rows(store, "journal_calls") == [("7", "grep")]  # same transaction
        assert await rows(store, "journal_results") == [('"a"', result("a", "done"), 0)]
        assert [f["id"] for f in await send_all(journal.outbox)] == ["a"]
        journal.put_result(7, result(7, "also"))
        await journal.wait_released()
        journal.outbox.confirm(1)  # the pong covering the first one came back
        await journal.flush()
        assert await rows(store, "journal_results") == [("7", result(7, "also"), 0)]
        assert await rows(store, "journal_calls") == []


async def test_a_result_sent_before_its_commit_is_written_as_sent(tmp_path: Path) -> None:
    async with running(tmp_path) as (journal, store):
        journal.accept("a", "terminal")
        await journal.flush()
        journal.put_result("a", result("a", "done"))
        assert journal.outbox.take() == result("a", "done")  # on the socket before the commit
        await journal.wait_released()
        assert await rows(store, "journal_results") == [('"a"', result("a", "done"), 1)]
        assert await rows(store, "journal_calls") == []
        journal.outbox.confirm(journal.outbox.mark())
        await journal.flush()
        assert await rows(store, "journal_results") == []


async def test_a_result_confirmed_before_its_commit_is_never_written(tmp_path: Path) -> None:
    async with running(tmp_path) as (journal, store):
        journal.accept("a", "terminal")
        await journal.flush()
        journal.put_result("a", result("a", "done"))
        journal.outbox.take()
        journal.outbox.confirm(journal.outbox.mark())  # before the writer task ran
        await journal.wait_released()
        await journal.flush()
        assert await rows(store, "journal_results") == []
        assert await rows(store, "journal_calls") == []  # the call's row goes all the same


async def test_a_result_confirmed_during_its_commit_is_deleted(tmp_path: Path) -> None:
    async with running(tmp_path) as (journal, store):
        journal.put_result("a", result("a", "done"))
        journal.outbox.take()
        batch = trio.Event()
        real_write = store.write

        async def write_then_confirm(fn: Any) -> Any:
            journal.outbox.confirm(journal.outbox.mark())  # while the batch is in the thread
            try:
                return await real_write(fn)
            finally:
                batch.set()

        store.write = write_then_confirm  # type: ignore[method-assign]
        await batch.wait()
        store.write = real_write  # type: ignore[method-assign]
        await journal.wait_released()
        await journal.flush()
        assert await rows(store, "journal_results") == []


async def test_a_running_call_is_written_within_the_accept_delay(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running(tmp_path) as (journal, store):
        journal.accept("quick", "file_read")
        journal.put_result("quick", result("quick", "at once"))
        await journal.wait_released()
        journal.accept("slow", "terminal")
        await trio.sleep(ACCEPT_DELAY / 2)
        assert await rows(store, "journal_calls") == []
        await trio.sleep(ACCEPT_DELAY / 2 + 0.01)
        assert await rows(store, "journal_calls") == [('"slow"', "terminal")]  # never "quick"


async def test_a_batch_is_one_transaction_and_keeps_the_order(tmp_path: Path) -> None:
    async with running(tmp_path) as (journal, store):
        for i in range(500):
            journal.accept(i, "file_read")
            journal.put_result(i, result(i, str(i)))
        await journal.wait_released()
        assert await rows(store, "journal_calls") == []
        assert [f["id"] for f in await send_all(journal.outbox)] == list(range(500))


async def test_results_and_running_calls_survive_a_restart(tmp_path: Path) -> None:
    async with running(tmp_path) as (journal, _):
        journal.accept(1, "terminal")
        journal.accept("x", "code")
        journal.accept("sent", "grep")
        journal.put_result("sent", result("sent", "one"))
        await journal.wait_released()
        await send_all(journal.outbox)  # sent, never confirmed: the cloud may lack it
        journal.accept("queued", "grep")
        journal.put_result("queued", result("queued", "two"))
    # ... edge stops without a word: calls 1 and "x" never finished.
    async with running(tmp_path) as (journal, store):
        await journal.recover()
        assert len(journal) == 4
        frames = await send_all(journal.outbox)
        assert [f["id"] for f in frames] == ["sent", "queued", 1, "x"]  # the id keeps its type
        interrupted = {"error": INTERRUPTED, "interrupted": True, "tool": "terminal"}
        assert frames[2]["result"] == interrupted
        assert journal.outbox.resent == 1  # "sent" went out in the last run already
        assert await rows(store, "journal_calls") == []
        journal.outbox.confirm(journal.outbox.mark())
    async with running(tmp_path) as (journal, store):
        await journal.recover()
        assert len(journal) == 0
        assert await rows(store, "journal_results") == []


async def test_an_outbox_jsonl_is_imported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    legacy = tmp_path / "outbox.jsonl"
    legacy.write_text(result("old-1", "a") + "\nnot json\n" + result(2, "b") + "\n")
    async with running(tmp_path) as (journal, store):
        await journal.recover(legacy)
        assert not legacy.exists()
        assert [r[0] for r in await rows(store, "journal_results")] == ['"old-1"', "2"]
        assert [f["id"] for f in await send_all(journal.outbox)] == ["old-1", 2]
    assert "2 from outbox.jsonl" in caplog.text
    async with running(tmp_path) as (journal, _):
        await journal.recover(legacy)  # the file is gone; the journal still has both
        assert len(journal) == 2


async def test_the_bound_applies_to_what_is_kept(tmp_path: Path) -> None:
    async with running(tmp_path, max_results=3) as (journal, store):
        for i in range(5):
            journal.put_result(i, result(i, "x"))
        await journal.wait_released()
        assert journal.outbox.dropped == 2
        await journal.flush()
        assert [r[0] for r in await rows(store, "journal_results")] == ["2", "3", "4"]
    async with running(tmp_path, max_results=2) as (journal, store):
        await journal.recover()
        assert journal.outbox.dropped == 1
        assert len(journal) == 2
        await journal.flush()
        assert [r[0] for r in await rows(store, "journal_results")] == ["3", "4"]


async def test_a_cancelled_writer_loses_nothing(tmp_path: Path) -> None:
    async with open_store(tmp_path / DB_FILE) as store:
        journal = Journal(store)
        with trio.CancelScope() as scope:
            journal.put_result("late", result("late", "z"))
            scope.cancel()
            await journal.run()  # cancelled before its first write started
        await journal.close()
        assert [r[0] for r in await rows(store, "journal_results")] == ['"late"']


async def test_without_a_store_results_go_straight_to_the_outbox(tmp_path: Path) -> None:
    journal = Journal(None)
    journal.accept("a", "terminal")
    journal.put_result("a", result("a", "x"))
    assert not journal.durable
    assert journal.outbox.pending() == [result("a", "x")]
    legacy = tmp_path / "outbox.jsonl"
    legacy.write_text(result("kept", "y") + "\n")
    await journal.recover(legacy)
    assert journal.outbox.pending()[0] == result("kept", "y")
    assert legacy.exists()  # left for a run that has a store


async def test_a_store_that_fails_leaves_the_results_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(tmp_path) as (journal, store):
        journal.put_result(1, result(1, "before"))
        await journal.wait_released()
        await store.write(lambda conn: conn.execute("DROP TABLE journal_results"))
        journal.put_result(2, result(2, "after"))
        with trio.fail_after(5):
            await journal.wait_released()
        assert not journal.durable
        assert [f["id"] for f in await send_all(journal.outbox)] == [1, 2]
    assert "keeping results in memory only" in caplog.text
