"""The embedded store: one SQLite database, ``edge.db``, in edge's state directory.

Everything edge must remember across a restart lives here, each user in its
own tables: the tunnel's journal first (calls running, results the cloud has
not confirmed), the scheduler's schedules next, then the agents' identity, tasks
and task events. The schema has a version:
``schema_version`` holds one row per numbered migration applied, and opening
the store applies those it lacks, each in its own transaction, in order. New
tables come as a new migration appended to ``MIGRATIONS``, never as an edit of
an old one.

Durability: WAL journal with ``synchronous=NORMAL``. A committed transaction
survives the process crashing or being killed (``kill -9``), which is what
edge promises; an operating-system crash or a power cut may lose the last
transactions, but never corrupts the database. A database that is corrupt
anyway is moved aside (``edge.db.corrupt-<time>``) and a fresh one is made.

All access happens in a worker thread, one operation at a time per connection
(``trio.to_thread.run_sync`` with a ``CapacityLimiter(1)``), so the event loop
never waits on the disk; keep each operation short. Writes cannot be abandoned
half way: a write either runs to its commit or does not start. The directory
is made mode 0700 and the database files are mode 0600, since they hold tool
output. ``async with open_store(path) as store:`` owns the one connection and
closes it at the end, even when cancelled.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

import trio

from .fs import PRIVATE_MODE, make_private_dir

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The database's file name inside the state directory.
DB_FILE: Final = "edge.db"
#: Seconds a statement waits for another connection's lock before failing.
BUSY_TIMEOUT: Final = 5.0
#: SQLite's primary result codes that mean the file is not a usable database.
_CORRUPT_CODES: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered step of the schema: its statements run in one transaction."""

    version: int
    name: str
    statements: tuple[str, ...]


#: Every migration, in order; the last one's version is the current schema.
MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "tunnel journal: calls running and results the cloud has not confirmed",
        (
            """CREATE TABLE journal_calls (
                call_id TEXT PRIMARY KEY,      -- the JSON encoding of the call's id
                tool TEXT NOT NULL,
                accepted_at REAL NOT NULL      -- seconds since the epoch
            )""",
            """CREATE TABLE journal_results (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                call_id TEXT,                  -- the JSON encoding of the call's id
                frame TEXT NOT NULL,           -- the encoded response, as sent
                finished_at REAL NOT NULL,
                sent INTEGER NOT NULL DEFAULT 0  -- sent at least once, unconfirmed
            )""",
        ),
    ),
    Migration(
        2,
        "scheduler: tasks, their slots, and their run history (edge.scheduler.records)",
        (
            """CREATE TABLE schedule_tasks (
                id TEXT PRIMARY KEY,           -- s-xxxxxx
                name TEXT UNIQUE,              -- optional, unique
                timetable TEXT NOT NULL,       -- Timetable.to_json()
                tool TEXT NOT NULL,
                args TEXT NOT NULL,            -- JSON object
                missed TEXT NOT NULL,          -- run-once | skip
                grace REAL,                    -- seconds; NULL: the default
                origin TEXT NOT NULL,          -- local | cloud
                paused INTEGER NOT NULL DEFAULT 0,
                created_at REAL NOT NULL,      -- seconds since the epoch, like every time here
                next_slot REAL,                -- NULL: no slot left
                last_slot REAL                 -- the last slot run, missed or skipped
            )""",
            """CREATE TABLE schedule_runs (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                task_id TEXT NOT NULL,
                slot REAL,                     -- NULL: run on demand
                started_at REAL,
                ended_at REAL,
                status TEXT NOT NULL,
                excerpt TEXT,
                reported INTEGER NOT NULL DEFAULT 0,  -- told to the cloud
                missed INTEGER NOT NULL DEFAULT 0     -- slots a missed/skipped row stands for
            )""",
            "CREATE INDEX schedule_runs_by_task ON schedule_runs (task_id, seq)",
        ),
    ),
    Migration(
        3,
        "agents: this edge's agent id, the agents' tasks and their events",
        (
            "CREATE TABLE agent_identity (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            """CREATE TABLE agent_tasks (
                id TEXT PRIMARY KEY,
                context_id TEXT NOT NULL,
                skill TEXT NOT NULL,
                args TEXT NOT NULL,            -- JSON
                origin TEXT NOT NULL,          -- local, a2a, cloud, edge:<agent id>
                agent TEXT,                    -- the remote agent it was handed to
                state TEXT NOT NULL,
                created_at REAL NOT NULL,      -- seconds since the epoch
                updated_at REAL NOT NULL,
                deadline REAL,
                result TEXT,                   -- JSON, once finished
                reason TEXT,
                seq INTEGER NOT NULL           -- its last event's number
            )""",
            "CREATE INDEX agent_tasks_created ON agent_tasks (created_at)",
            """CREATE TABLE agent_events (
                task_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                event TEXT NOT NULL,           -- JSON, as sent
                PRIMARY KEY (task_id, seq)
            )""",
        ),
    ),
)


class Store:
    """The open store: run short functions of the connection in its worker thread."""

    def __init__(self, conn: sqlite3.Connection, path: Path, limiter: trio.CapacityLimiter) -> None:
        self._conn = conn
        self._limiter = limiter
        self.path = path

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` in a read transaction (one consistent snapshot).

        Raises:
            sqlite3.Error: the database failed (callers that must keep working catch it).
        """
        return await self._run(partial(_transaction, "BEGIN", fn))

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` in a write transaction, committed before this returns.

        ``fn`` runs to its commit even if the caller is cancelled meanwhile (the
        cancellation is delivered after), or not at all if cancelled before it
        started; an exception from ``fn`` rolls everything back.

        Raises:
            sqlite3.Error: the database failed (callers that must keep working catch it).
        """
        return await self._run(partial(_transaction, "BEGIN IMMEDIATE", fn))

    async def version(self) -> int:
        """The schema version of the database."""
        return await self.read(_schema_version)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await trio.to_thread.run_sync(
            fn, self._conn, limiter=self._limiter, abandon_on_cancel=False
        )


@asynccontextmanager
async def open_store(
    path: Path, migrations: Sequence[Migration] = MIGRATIONS
) -> AsyncIterator[Store]:
    """Open (or create) the database at ``path`` and apply the migrations it lacks.

    A corrupt database is moved aside to ``<name>.corrupt-<time>`` (with its WAL)
    and a fresh one is made; that is logged as an error.

    Raises:
        OSError: the directory or the file cannot be created or opened.
        sqlite3.Error: the database cannot be used (e.g. a newer edge's schema).
    """
    limiter = trio.CapacityLimiter(1)
    conn = await trio.to_thread.run_sync(
        _open, path, tuple(migrations), limiter=limiter, abandon_on_cancel=False
    )
    try:
        yield Store(conn, path, limiter)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(conn.close, limiter=limiter, abandon_on_cancel=False)


@asynccontextmanager
async def open_store_in(state_dir: Path | None) -> AsyncIterator[Store | None]:
    """The store in ``state_dir``, or ``None`` when there is none to be had.

    ``None`` (no state directory, or a store that cannot be opened: a read-only
    directory, a newer edge's schema) is said in the log; the caller then keeps
    its state in memory, where a restart loses it.
    """
    if state_dir is None:
        log.warning("no state directory: what edge must remember is kept in memory only")
        yield None
        return
    path = state_dir / DB_FILE
    async with AsyncExitStack() as stack:
        store: Store | None = None
        try:
            store = await stack.enter_async_context(open_store(path))
        except (OSError, sqlite3.Error) as exc:
            log.error(
                "cannot open the store %s (%s): what edge must remember is kept in memory "
                "only, and lost if edge stops",
                path,
                exc,
            )
        yield store


def open_sync(path: Path, migrations: Sequence[Migration] = MIGRATIONS) -> sqlite3.Connection:
    """The database at ``path`` on a connection of this thread, opened as ``open_store``
    opens it (migrations applied, a corrupt one moved aside): for a command that works on
    the store while no daemon runs. The caller closes it; ``write_sync`` changes it.

    Raises:
        OSError, sqlite3.Error: as ``open_store``.
    """
    return _open(path, tuple(migrations))


#: The file a running daemon holds a shared lock on (``hold_run_lock``), beside the store: a
#: command that edits the store itself (no daemon answers it) checks it first
#: (``daemon_running``), so that it never changes what a running daemon holds in memory.
RUN_LOCK_FILE: Final = "edge.lock"


@contextmanager
def hold_run_lock(state_dir: Path) -> Iterator[None]:
    """Hold the run lock of ``state_dir`` (shared: daemons do not exclude each other).

    Raises:
        OSError: the lock file cannot be made.
    """
    fd = os.open(state_dir / RUN_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def daemon_running(state_dir: Path) -> bool:
    """Whether a daemon holds the run lock of ``state_dir`` now."""
    try:
        fd = os.open(state_dir / RUN_LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def write_sync(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn(conn)`` in a write transaction on an ``open_sync`` connection, committed before
    this returns (an exception rolls it back)."""
    return _transaction("BEGIN IMMEDIATE", fn, conn)


# -- in the worker thread -------------------------------------------------------------


def _transaction(begin: str, fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    conn.execute(begin)
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _open(path: Path, migrations: tuple[Migration, ...]) -> sqlite3.Connection:
    make_private_dir(path.parent)
    try:
        return _connect(path, migrations)
    except sqlite3.DatabaseError as exc:
        if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) not in _CORRUPT_CODES:
            raise
        aside = _move_aside(path)
        log.error(
            "the store %s is corrupt (%s): moved it aside to %s and started a fresh one",
            path,
            exc,
            aside,
        )
        return _connect(path, migrations)


def _connect(path: Path, migrations: tuple[Migration, ...]) -> sqlite3.Connection:
    # Made here with mode 0600 first: SQLite creates the -wal and -shm files with
    # the database file's mode.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE))
    if stat.S_IMODE(path.stat().st_mode) != PRIVATE_MODE:
        os.chmod(path, PRIVATE_MODE)
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError(f"{path}: cannot use WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = NORMAL")
        _migrate(conn, migrations)
    except BaseException:
        conn.close()
        raise
    return conn


def _schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(row[0])


def _migrate(conn: sqlite3.Connection, migrations: tuple[Migration, ...]) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    step = partial(_next_migration, sorted(migrations, key=lambda m: m.version))
    while (applied := _transaction("BEGIN IMMEDIATE", step, conn)) is not None:
        log.info("store: applied migration %d (%s)", applied.version, applied.name)


def _next_migration(migrations: list[Migration], conn: sqlite3.Connection) -> Migration | None:
    """Apply the first migration the database lacks (read and applied in one transaction)."""
    current = _schema_version(conn)
    known = migrations[-1].version if migrations else 0
    if current > known:
        raise sqlite3.DatabaseError(
            f"the store has schema version {current}, newer than this edge knows ({known})"
        )
    for migration in migrations:
        if migration.version > current:
            _apply(migration, conn)
            return migration
    return None


def _apply(migration: Migration, conn: sqlite3.Connection) -> None:
    for statement in migration.statements:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
        (migration.version, migration.name, time.time()),
    )


def _move_aside(path: Path) -> Path:
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    n = 1
    while aside.exists():
        n += 1
        aside = aside.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{n}")
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.replace(companion, aside.with_name(aside.name + suffix))
    return aside
