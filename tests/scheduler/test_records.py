"""edge.scheduler.records: the tables in a real store, slots, history, pruning."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.scheduler import records
from edge.scheduler.records import RunRow, TaskRow
from edge.scheduler.timetable import cron, every
from edge.store import DB_FILE, MIGRATIONS, Store, open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(tmp_path / DB_FILE) as store:
        yield store


def task(task_id: str = "s-000001", name: str | None = None, **fields: object) -> TaskRow:
    base: dict[str, object] = dict(
        id=task_id, name=name, timetable=every(60, anchor=1000.0), tool="file_read",
        args={"path": "a.txt"}, missed="run-once", grace=None, origin="local", paused=False,
        created_at=1000.0, next_slot=1060.0, last_slot=None,
    )  # fmt: skip
    base.update(fields)
    return TaskRow(**base)  # type: ignore[arg-type]


def test_the_migration_is_in_the_store_s_list() -> None:
    assert records.MIGRATION in MIGRATIONS
    assert records.MIGRATION.version == 2


async def test_tasks_round_trip(store: Store) -> None:
    one = task(name="backup")
    two = task("s-000002", timetable=cron("30 1 * * *", "Europe/Berlin"), created_at=1001.0)
    await store.write(lambda c: records.insert_task(c, one))
    await store.write(lambda c: records.insert_task(c, two))
    assert await store.read(records.list_tasks) == [one, two]
    assert await store.read(lambda c: records.get_task(c, "backup")) == one  # by name
    assert await store.read(lambda c: records.get_task(c, "s-000002")) == two
    assert await store.read(lambda c: records.get_task(c, "nope")) is None
    paused = await store.write(lambda c: records.set_paused(c, "backup", True))
    assert paused is not None
    assert paused.paused
    assert await store.write(lambda c: records.set_paused(c, "nope", True)) is None
    j = two.to_json()
    assert j["schedule"] == "cron 30 1 * * * (Europe/Berlin)"
    assert j["nextRun"] == 1060.0
    assert j["nextRunLocal"].startswith("1970-01-01T")
    assert set(j) == {
        "id", "name", "kind", "schedule", "timetable", "tool", "args", "missed", "grace",
        "origin", "paused", "createdAt", "nextRun", "nextRunLocal", "lastSlot",
    }  # fmt: skip


async def test_names_are_unique_and_never_look_like_ids(store: Store) -> None:
    await store.write(lambda c: records.insert_task(c, task(name="backup")))
    with pytest.raises(ValueError, match="name 'backup' exists"):
        await store.write(lambda c: records.insert_task(c, task("s-000002", name="backup")))
    with pytest.raises(ValueError, match="look like a task id"):
        await store.write(lambda c: records.insert_task(c, task("s-000003", name="s-abcdef")))
    with pytest.raises(ValueError, match="id s-000001 exists"):
        await store.write(lambda c: records.insert_task(c, task()))
    assert len(await store.read(records.list_tasks)) == 1
    assert records.is_task_id(records.new_task_id())


async def test_a_run_s_slot_is_written_with_its_running_row(store: Store) -> None:
    await store.write(lambda c: records.insert_task(c, task()))
    row = await store.write(
        lambda c: records.begin_run(
            c, "s-000001", slot=1060.0, started_at=1060.0, next_slot=1120.0, last_slot=1060.0
        )
    )
    assert row.status == "running"
    stored = await store.read(lambda c: records.get_task(c, "s-000001"))
    assert stored is not None
    assert (stored.next_slot, stored.last_slot) == (1120.0, 1060.0)
    assert await store.read(records.unreported) == []  # not finished
    ended = await store.write(
        lambda c: records.end_run(c, row.seq, status="ok", ended_at=1061.0, text="x" * 2000)
    )
    assert ended is not None
    assert ended.status == "ok"
    assert ended.excerpt is not None
    assert len(ended.excerpt) == records.EXCERPT_CHARS
    assert [r.seq for r in await store.read(records.unreported)] == [row.seq]
    await store.write(lambda c: records.mark_reported(c, [row.seq]))
    assert await store.read(records.unreported) == []
    assert ended.to_json()["taskId"] == "s-000001"


async def test_runs_left_running_become_interrupted(store: Store) -> None:
    await store.write(lambda c: records.insert_task(c, task()))
    left = await store.write(
        lambda c: records.record(c, "s-000001", status="running", slot=1060.0, started_at=1060.0)
    )
    done = await store.write(lambda c: records.interrupt_running(c, now=2000.0))
    assert [(r.seq, r.status, r.ended_at) for r in done] == [(left.seq, "interrupted", 2000.0)]
    assert await store.write(lambda c: records.interrupt_running(c, now=3000.0)) == []


async def test_delete_takes_the_history_too(store: Store) -> None:
    await store.write(lambda c: records.insert_task(c, task()))
    await store.write(lambda c: records.insert_task(c, task("s-000002")))
    for tid in ("s-000001", "s-000002"):
        await store.write(
            lambda c, tid=tid: records.record(
                c, tid, status="missed", slot=1.0, started_at=None, ended_at=1.0, missed=3
            )
        )
    assert await store.write(lambda c: records.delete_task(c, "s-000001"))
    assert not await store.write(lambda c: records.delete_task(c, "s-000001"))
    assert [r.task_id for r in await store.read(records.history)] == ["s-000002"]


async def test_history_is_pruned_by_count_and_age(store: Store) -> None:
    await store.write(lambda c: records.insert_task(c, task()))
    await store.write(lambda c: records.insert_task(c, task("s-000002")))
    day = 86400.0

    def fill(conn: sqlite3.Connection) -> None:
        for i in range(150):
            records.record(conn, "s-000001", status="ok", slot=float(i), started_at=100 * day + i,
                           ended_at=100 * day + i)  # fmt: skip
        records.record(conn, "s-000001", status="running", slot=0.0, started_at=1.0)
        for i in range(5):  # old ones
            records.record(conn, "s-000002", status="ok", slot=float(i), started_at=i * day,
                           ended_at=i * day)  # fmt: skip

    await store.write(fill)
    now = 100 * day + 200
    dropped = await store.write(lambda c: records.prune(c, now=now))
    first: list[RunRow] = await store.read(lambda c: records.history(c, "s-000001", 1000))
    second = await store.read(lambda c: records.history(c, "s-000002", 1000))
    assert second == []  # all older than 30 days
    assert len(first) == records.HISTORY_PER_TASK  # the running row counts, and is kept
    assert first[0].status == "running"
    assert [r.slot for r in first[1:]] == [float(i) for i in range(149, 50, -1)]
    assert dropped == 5 + 51
    newest = await store.read(lambda c: records.history(c, None, 3))
    assert [r.seq for r in newest] == sorted((r.seq for r in newest), reverse=True)


async def test_a_task_row_that_cannot_be_read_is_left_out(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await store.write(lambda c: records.insert_task(c, task()))
    await store.write(lambda c: records.insert_task(c, task("s-000002", created_at=1001.0)))
    await store.write(
        lambda c: c.execute(
            "UPDATE schedule_tasks SET timetable = ? WHERE id = 's-000001'",
            ('{"kind": "cron", "cron": "* * * * *", "tz": "Gone/Away"}',),
        )
    )
    assert [t.id for t in await store.read(records.list_tasks)] == ["s-000002"]
    assert await store.read(lambda c: records.get_task(c, "s-000001")) is None
    assert "s-000001 cannot be read" in caplog.text
    assert await store.write(lambda c: records.delete_task(c, "s-000001"))  # still removable


async def test_pruning_keeps_a_cloud_task_s_rows_not_yet_reported(store: Store) -> None:
    await store.write(lambda c: records.insert_task(c, task("s-00000c", origin="cloud")))
    await store.write(lambda c: records.insert_task(c, task("s-00000d")))
    day = 86400.0

    def fill(conn: sqlite3.Connection) -> list[int]:
        seqs = []
        for tid in ("s-00000c", "s-00000d"):
            for i in range(150):
                row = records.record(conn, tid, status="ok", slot=float(i), started_at=i * 60.0,
                                     ended_at=i * 60.0)  # fmt: skip
                seqs.append(row.seq)
        return seqs

    await store.write(fill)
    now = 60 * day  # every row is older than 30 days
    await store.write(lambda c: records.prune(c, now=now))
    cloud = await store.read(lambda c: records.history(c, "s-00000c", 1000))
    local = await store.read(lambda c: records.history(c, "s-00000d", 1000))
    assert len(cloud) == 150  # none told to the cloud yet: all kept
    assert local == []
    await store.write(lambda c: records.mark_reported(c, [r.seq for r in cloud[:140]]))
    await store.write(lambda c: records.prune(c, now=now))
    left = await store.read(lambda c: records.history(c, "s-00000c", 1000))
    assert sorted(r.slot for r in left if r.slot is not None) == [float(i) for i in range(10)]
    assert not any(r.reported for r in left)


async def test_unreported_rows_are_bounded_all_the_same(store: Store) -> None:
    await store.write(lambda c: records.insert_task(c, task("s-00000c", origin="cloud")))

    def fill(conn: sqlite3.Connection) -> None:
        for i in range(records.UNREPORTED_PER_TASK + 20):
            records.record(conn, "s-00000c", status="ok", slot=float(i), started_at=1.0,
                           ended_at=1.0)  # fmt: skip

    await store.write(fill)
    await store.write(lambda c: records.prune(c, now=2.0, task_id="s-00000c"))
    kept = await store.read(lambda c: records.history(c, "s-00000c", 10_000))
    assert len(kept) == records.UNREPORTED_PER_TASK
    assert kept[-1].slot == 20.0


async def test_last_runs_are_one_per_task(store: Store) -> None:
    await store.write(lambda c: records.insert_task(c, task()))
    await store.write(lambda c: records.insert_task(c, task("s-000002")))
    await store.write(lambda c: records.insert_task(c, task("s-000003")))

    def fill(conn: sqlite3.Connection) -> None:
        for i in range(3):
            for tid in ("s-000001", "s-000002"):
                records.record(conn, tid, status="ok", slot=float(i), started_at=float(i))

    await store.write(fill)
    last = await store.read(records.last_runs)
    assert {tid: r.slot for tid, r in last.items()} == {"s-000001": 2.0, "s-000002": 2.0}
