"""The embedded store: a real SQLite file in a temporary state directory."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest
import trio

from edge.store import DB_FILE, MIGRATIONS, Migration, Store, open_store, open_store_in

from .conftest import open_fds

PEOPLE = Migration(1, "people", ("CREATE TABLE people (name TEXT PRIMARY KEY, age INTEGER)",))
PETS = Migration(2, "pets", ("CREATE TABLE pets (name TEXT, owner TEXT)",))
HOMES = Migration(
    3, "homes", ("CREATE TABLE homes (owner TEXT)", "CREATE INDEX homes_owner ON homes (owner)")
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def corrupt_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(f"{DB_FILE}.corrupt-")]


async def select(store: Store, sql: str) -> list[tuple[object, ...]]:
    return await store.read(lambda conn: conn.execute(sql).fetchall())


async def applied(store: Store) -> list[tuple[object, ...]]:
    return await select(store, "SELECT version, name FROM schema_version ORDER BY version")


async def test_open_makes_a_private_wal_database(tmp_path: Path) -> None:
    path = tmp_path / "state" / "edge" / DB_FILE
    async with open_store(path) as store:
        pragmas = await store.read(
            lambda conn: [
                conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "busy_timeout")
            ]
        )
        assert pragmas == ["wal", 1, 5000]  # synchronous=1 is NORMAL
        await store.write(
            lambda conn: conn.execute("INSERT INTO journal_calls VALUES ('1', 't', 0)")
        )
        assert await store.version() == MIGRATIONS[-1].version
        assert mode(path.parent) == 0o700
        assert mode(path) == 0o600
        wal = path.with_name(DB_FILE + "-wal")
        assert wal.exists()
        assert mode(wal) == 0o600


async def test_an_existing_database_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / DB_FILE
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    async with open_store(path):
        pass
    assert mode(path) == 0o600


async def test_migrations_run_once_and_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.store")
    path = tmp_path / DB_FILE
    async with open_store(path, [PETS, PEOPLE]) as store:
        assert await applied(store) == [(1, "people"), (2, "pets")]
        await store.write(lambda conn: conn.execute("INSERT INTO people VALUES ('ann', 40)"))
    assert [r.getMessage() for r in caplog.records] == [
        "store: applied migration 1 (people)",
        "store: applied migration 2 (pets)",
    ]
    caplog.clear()
    async with open_store(path, [PEOPLE, PETS]) as store:
        assert await store.version() == 2
    assert caplog.records == []  # nothing to apply the second time
    async with open_store(path, [PEOPLE, PETS, HOMES]) as store:
        assert await applied(store) == [(1, "people"), (2, "pets"), (3, "homes")]
        assert await select(store, "SELECT * FROM people") == [("ann", 40)]  # data outlives them


async def test_a_newer_schema_is_refused_and_the_file_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / DB_FILE
    future = Migration(MIGRATIONS[-1].version + 1, "future", ("CREATE TABLE future (x)",))
    async with open_store(path, [PEOPLE, PETS, future]):
        pass
    with pytest.raises(sqlite3.DatabaseError, match="newer than this edge knows"):
        async with open_store(path, [PEOPLE]):
            pass
    async with open_store_in(tmp_path) as store:  # edge's own migrations stop before future
        assert store is None
    assert "cannot open the store" in caplog.text
    assert corrupt_files(tmp_path) == []


async def test_a_failed_write_is_rolled_back(tmp_path: Path) -> None:
    async with open_store(tmp_path / DB_FILE, [PEOPLE]) as store:

        def half(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO people VALUES ('bob', 1)")
            conn.execute("INSERT INTO people VALUES ('bob', 2)")  # primary key taken

        with pytest.raises(sqlite3.IntegrityError):
            await store.write(half)
        assert await select(store, "SELECT count(*) FROM people") == [(0,)]


async def test_a_write_runs_to_its_commit_when_cancelled(tmp_path: Path) -> None:
    async with open_store(tmp_path / DB_FILE, [PEOPLE]) as store:

        def slow(conn: sqlite3.Connection) -> None:
            time.sleep(0.3)
            conn.execute("INSERT INTO people VALUES ('cat', 3)")

        with trio.move_on_after(0.05) as scope:
            await store.write(slow)
            await trio.lowlevel.checkpoint()  # where the cancellation lands: after the commit
            raise AssertionError("not reached")
        assert scope.cancelled_caught
        assert await select(store, "SELECT name FROM people") == [("cat",)]


def write_garbage(path: Path) -> bytes:
    garbage = b"this is no database, " * 500
    path.write_bytes(garbage)
    return garbage


async def test_a_corrupt_database_is_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / DB_FILE
    garbage = write_garbage(path)
    async with open_store_in(tmp_path) as store:
        assert store is not None
        assert await store.version() == MIGRATIONS[-1].version
    aside = corrupt_files(tmp_path)
    assert len(aside) == 1
    assert aside[0].read_bytes() == garbage
    assert mode(path) == 0o600
    assert "is corrupt" in caplog.text
    assert str(aside[0]) in caplog.text


async def test_an_unusable_directory_means_no_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    write_garbage(blocker)
    async with open_store_in(blocker / "state") as store:
        assert store is None
    assert "cannot open the store" in caplog.text
    assert "in memory only" in caplog.text
    async with open_store_in(None) as store:
        assert store is None
    assert "no state directory" in caplog.text


async def test_closing_leaves_no_descriptor_or_thread_behind(tmp_path: Path) -> None:
    fds = open_fds()
    threads = len(os.listdir("/proc/self/task"))
    for i in range(10):
        async with open_store(tmp_path / DB_FILE, [PEOPLE]) as store:
            await store.write(
                lambda conn, i=i: conn.execute("INSERT INTO people VALUES (?, ?)", (f"p{i}", i))
            )
            assert len(open_fds() - fds) >= 3  # the database, its WAL and its shared memory
    assert open_fds() <= fds
    # One idle worker of trio's thread cache may stay for a while; never one per store.
    assert len(os.listdir("/proc/self/task")) <= threads + 1


async def test_the_store_closes_when_its_owner_is_cancelled(tmp_path: Path) -> None:
    fds = open_fds()
    with trio.move_on_after(0.2) as scope:
        async with open_store(tmp_path / DB_FILE, [PEOPLE]) as store:
            await store.write(lambda conn: conn.execute("INSERT INTO people VALUES ('dan', 4)"))
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert open_fds() <= fds
    async with open_store(tmp_path / DB_FILE, [PEOPLE]) as store:
        assert await select(store, "SELECT name FROM people") == [("dan",)]
