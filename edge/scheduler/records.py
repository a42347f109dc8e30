"""The scheduler's tables in the store: tasks, their slots, and their run history.

Plain functions of a ``sqlite3.Connection`` (no trio): the scheduler calls them
inside ``Store.read``/``Store.write``, and the command line can call them on a
connection of its own when no daemon runs. ``MIGRATION`` makes the tables
(schema version 2, one of ``edge.store.MIGRATIONS``).

A task's ``last_slot`` is the last slot taken care of (run, missed or skipped):
it is written in the same transaction as the run's ``running`` row, before the
run starts, so a slot never runs twice, even across a restart. A run row still
``running`` when edge starts belongs to an edge that was killed: it becomes
``interrupted`` and is not run again.

History is bounded: at most ``HISTORY_PER_TASK`` rows per task and none older
than ``HISTORY_MAX_AGE``, pruned whenever a task's run is recorded and at
start. A cloud task's rows not yet reported to the cloud are kept past both
(up to ``UNREPORTED_PER_TASK`` rows of the task). A result is kept as an
excerpt of ``EXCERPT_CHARS`` characters.

Task names are unique among tasks and never look like an id (``s-`` and six
hex digits), so ``get_task`` (and the scheduler's methods) take either.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from ..store import MIGRATIONS, Migration
from .timetable import MISSED_POLICIES, MissedPolicy, Timetable, local_iso

log = logging.getLogger(__name__)

#: History rows kept per task (the newest).
HISTORY_PER_TASK: Final = 100
#: History rows older than this are dropped (seconds: 30 days).
HISTORY_MAX_AGE: Final = 30 * 86400.0
#: The most history rows kept of a task, counting a cloud task's rows not yet reported.
UNREPORTED_PER_TASK: Final = 1000
#: Characters of a run's output (or error) kept in its history row.
EXCERPT_CHARS: Final = 500
#: The longest task name.
MAX_NAME_CHARS: Final = 64

Origin = Literal["local", "cloud"]
ORIGINS: Final = ("local", "cloud")
#: Every status a run row can have.
STATUSES: Final = (
    "running", "ok", "error", "timeout", "cancelled", "refused", "missed", "skipped",
    "interrupted",
)  # fmt: skip

_ID: Final = re.compile(r"s-[0-9a-f]{6}")

#: The scheduler's tables: schema version 2 (its text is in ``edge.store.MIGRATIONS``).
MIGRATION: Final[Migration] = next(m for m in MIGRATIONS if m.version == 2)


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One scheduled task: run ``tool`` with ``args`` at each slot of ``timetable``."""

    id: str
    name: str | None
    timetable: Timetable
    tool: str
    args: dict[str, Any]
    missed: MissedPolicy
    grace: float | None
    origin: Origin
    paused: bool
    created_at: float
    next_slot: float | None
    last_slot: float | None

    def to_json(self) -> dict[str, Any]:
        """The task for the control API and the tunnel (camelCase keys)."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.timetable.kind,
            "schedule": self.timetable.describe(),
            "timetable": self.timetable.to_json(),
            "tool": self.tool,
            "args": self.args,
            "missed": self.missed,
            "grace": self.grace,
            "origin": self.origin,
            "paused": self.paused,
            "createdAt": self.created_at,
            "nextRun": self.next_slot,
            "nextRunLocal": None if self.next_slot is None else local_iso(self.next_slot),
            "lastSlot": self.last_slot,
        }


@dataclass(frozen=True, slots=True)
class RunRow:
    """One history row: a run (``running`` until it ends) or a missed/skipped slot."""

    seq: int
    task_id: str
    slot: float | None
    started_at: float | None
    ended_at: float | None
    status: str
    excerpt: str | None
    reported: bool
    missed: int

    def to_json(self) -> dict[str, Any]:
        """The row for the control API and the tunnel (camelCase keys)."""
        return {
            "seq": self.seq,
            "taskId": self.task_id,
            "slot": self.slot,
            "slotLocal": None if self.slot is None else local_iso(self.slot),
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "status": self.status,
            "excerpt": self.excerpt,
            "reported": self.reported,
            "missed": self.missed,
        }


def new_task_id() -> str:
    """A fresh task id: ``s-`` and six hex digits."""
    return "s-" + secrets.token_hex(3)


def is_task_id(text: str) -> bool:
    """Whether ``text`` has the form of a task id."""
    return _ID.fullmatch(text) is not None


def check_name(name: str | None) -> None:
    """Refuse a name that is empty, too long, or looks like an id.

    Raises:
        ValueError: said for the user.
    """
    if name is None:
        return
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError("a task name is a non-empty string without surrounding spaces")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"a task name has at most {MAX_NAME_CHARS} characters")
    if is_task_id(name):
        raise ValueError(f"a task name cannot look like a task id: {name!r}")


def excerpt(text: str | None) -> str | None:
    """``text`` cut to ``EXCERPT_CHARS`` characters (an ellipsis marks a cut)."""
    if text is None or len(text) <= EXCERPT_CHARS:
        return text
    return text[: EXCERPT_CHARS - 1] + "…"


# -- tasks ----------------------------------------------------------------------------

_TASK_COLUMNS: Final = (
    "id, name, timetable, tool, args, missed, grace, origin, paused, created_at, next_slot, "
    "last_slot"
)


def _readable(row: Sequence[Any]) -> TaskRow | None:
    """The task of a row, or ``None`` (logged) for one this edge cannot read."""
    try:
        return _task(row)
    except (ValueError, TypeError) as exc:  # json.JSONDecodeError is a ValueError
        log.error("scheduler: the stored task %s cannot be read (%s): left out", row[0], exc)
        return None


def _task(row: Sequence[Any]) -> TaskRow:
    missed = row[5] if row[5] in MISSED_POLICIES else "run-once"
    origin = row[7] if row[7] in ORIGINS else "local"
    return TaskRow(
        id=row[0],
        name=row[1],
        timetable=Timetable.from_json(json.loads(row[2])),
        tool=row[3],
        args=json.loads(row[4]),
        missed=cast(MissedPolicy, missed),
        grace=row[6],
        origin=cast(Origin, origin),
        paused=bool(row[8]),
        created_at=row[9],
        next_slot=row[10],
        last_slot=row[11],
    )


def insert_task(conn: sqlite3.Connection, task: TaskRow) -> None:
    """Add ``task``.

    Raises:
        ValueError: its id or its name is taken, or its name is not valid.
    """
    check_name(task.name)
    try:
        conn.execute(
            f"INSERT INTO schedule_tasks ({_TASK_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                task.id,
                task.name,
                json.dumps(task.timetable.to_json()),
                task.tool,
                json.dumps(task.args),
                task.missed,
                task.grace,
                task.origin,
                int(task.paused),
                task.created_at,
                task.next_slot,
                task.last_slot,
            ),
        )
    except sqlite3.IntegrityError:
        taken = f"name {task.name!r}" if task.name is not None else f"id {task.id}"
        raise ValueError(f"a scheduled task with the {taken} exists already") from None


def get_task(conn: sqlite3.Connection, task_id: str) -> TaskRow | None:
    """The task with id ``task_id``, else the one with that name, else ``None``."""
    row = conn.execute(
        f"SELECT {_TASK_COLUMNS} FROM schedule_tasks WHERE id = ? OR name = ? "
        "ORDER BY id = ? DESC LIMIT 1",
        (task_id, task_id, task_id),
    ).fetchone()
    return None if row is None else _readable(row)


def list_tasks(conn: sqlite3.Connection) -> list[TaskRow]:
    """Every task, oldest first (one whose row cannot be read is logged and left out)."""
    rows = conn.execute(f"SELECT {_TASK_COLUMNS} FROM schedule_tasks ORDER BY created_at, id")
    return [task for row in rows if (task := _readable(row)) is not None]


def delete_task(conn: sqlite3.Connection, task_id: str) -> bool:
    """Remove a task (by id or name) and its history; ``False`` when there is none."""
    row = conn.execute(  # by id, not get_task: a row that cannot be read goes too
        "SELECT id FROM schedule_tasks WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1",
        (task_id, task_id, task_id),
    ).fetchone()
    if row is None:
        return False
    conn.execute("DELETE FROM schedule_runs WHERE task_id = ?", (row[0],))
    conn.execute("DELETE FROM schedule_tasks WHERE id = ?", (row[0],))
    return True


def set_paused(conn: sqlite3.Connection, task_id: str, paused: bool) -> TaskRow | None:
    """Pause or resume a task (by id or name); the task as it is now, or ``None``."""
    task = get_task(conn, task_id)
    if task is None:
        return None
    conn.execute("UPDATE schedule_tasks SET paused = ? WHERE id = ?", (int(paused), task.id))
    return get_task(conn, task.id)


def set_timetable(conn: sqlite3.Connection, task_id: str, timetable: Timetable) -> None:
    """Write a task's timetable (an interval's grid moved after the clock was set back)."""
    conn.execute(
        "UPDATE schedule_tasks SET timetable = ? WHERE id = ?",
        (json.dumps(timetable.to_json()), task_id),
    )


def set_slots(
    conn: sqlite3.Connection, task_id: str, *, next_slot: float | None, last_slot: float | None
) -> None:
    """Write a task's next slot and the last slot taken care of."""
    conn.execute(
        "UPDATE schedule_tasks SET next_slot = ?, last_slot = ? WHERE id = ?",
        (next_slot, last_slot, task_id),
    )


# -- runs -----------------------------------------------------------------------------

_RUN_COLUMNS: Final = "seq, task_id, slot, started_at, ended_at, status, excerpt, reported, missed"


def _run(row: Sequence[Any]) -> RunRow:
    return RunRow(
        seq=row[0],
        task_id=row[1],
        slot=row[2],
        started_at=row[3],
        ended_at=row[4],
        status=row[5],
        excerpt=row[6],
        reported=bool(row[7]),
        missed=row[8],
    )


def get_run(conn: sqlite3.Connection, seq: int) -> RunRow | None:
    """The history row ``seq``, or ``None``."""
    row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM schedule_runs WHERE seq = ?", (seq,))
    found = row.fetchone()
    return None if found is None else _run(found)


def record(
    conn: sqlite3.Connection,
    task_id: str,
    *,
    status: str,
    slot: float | None,
    started_at: float | None,
    ended_at: float | None = None,
    text: str | None = None,
    missed: int = 0,
) -> RunRow:
    """Add a history row (``running`` for a run that starts now); the row as written."""
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    cursor = conn.execute(
        "INSERT INTO schedule_runs (task_id, slot, started_at, ended_at, status, excerpt, missed) "
        "VALUES (?,?,?,?,?,?,?)",
        (task_id, slot, started_at, ended_at, status, excerpt(text), missed),
    )
    assert cursor.lastrowid is not None
    return RunRow(cursor.lastrowid, task_id, slot, started_at, ended_at, status,
                  excerpt(text), False, missed)  # fmt: skip


def begin_run(
    conn: sqlite3.Connection,
    task_id: str,
    *,
    slot: float | None,
    started_at: float,
    next_slot: float | None,
    last_slot: float | None,
) -> RunRow:
    """Record a run starting (``running``) with the task's slots, in one transaction."""
    set_slots(conn, task_id, next_slot=next_slot, last_slot=last_slot)
    return record(conn, task_id, status="running", slot=slot, started_at=started_at)


def end_run(
    conn: sqlite3.Connection,
    seq: int,
    *,
    status: str,
    ended_at: float,
    text: str | None,
    started_at: float | None = None,
) -> RunRow | None:
    """Record how run ``seq`` ended (and when it really started, if given) and prune its
    task's history; the row, or ``None``."""
    if status not in STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    conn.execute(
        "UPDATE schedule_runs SET status = ?, ended_at = ?, excerpt = ?, "
        "started_at = coalesce(?, started_at) WHERE seq = ?",
        (status, ended_at, excerpt(text), started_at, seq),
    )
    run = get_run(conn, seq)
    if run is not None:
        prune(conn, now=ended_at, task_id=run.task_id)
    return run


def interrupt_running(conn: sqlite3.Connection, *, now: float) -> list[RunRow]:
    """Mark the runs left ``running`` (by an edge that was killed) ``interrupted``."""
    seqs = [
        row[0] for row in conn.execute("SELECT seq FROM schedule_runs WHERE status = 'running'")
    ]
    conn.executemany(
        "UPDATE schedule_runs SET status = 'interrupted', ended_at = ?, excerpt = ? WHERE seq = ?",
        [(now, "edge stopped during the run", seq) for seq in seqs],
    )
    return [run for seq in seqs if (run := get_run(conn, seq)) is not None]


def prune(
    conn: sqlite3.Connection,
    *,
    now: float,
    task_id: str | None = None,
    keep: int = HISTORY_PER_TASK,
    max_age: float = HISTORY_MAX_AGE,
) -> int:
    """Drop history beyond ``keep`` rows per task and older than ``max_age``; rows dropped.

    Rows still ``running`` are kept, and so are a cloud task's rows not yet reported
    (up to ``UNREPORTED_PER_TASK`` rows of the task). ``task_id`` limits the count
    rules to one task.
    """
    cutoff = now - max_age
    dropped = conn.execute(
        f"DELETE FROM schedule_runs WHERE status != 'running' AND NOT {_OWED} "
        "AND coalesce(ended_at, started_at, slot, 0) < ?",
        (cutoff,),
    ).rowcount
    tasks = (
        [task_id]
        if task_id is not None
        else [r[0] for r in conn.execute("SELECT DISTINCT task_id FROM schedule_runs")]
    )
    for tid in tasks:
        for spare, most in ((f"AND NOT {_OWED}", keep), ("", max(keep, UNREPORTED_PER_TASK))):
            dropped += conn.execute(
                f"DELETE FROM schedule_runs WHERE task_id = ? AND status != 'running' {spare} "
                "AND seq <= (SELECT seq FROM schedule_runs WHERE task_id = ? "
                "ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (tid, tid, most),
            ).rowcount
    return dropped


#: A history row owed to the cloud: a cloud task's, not yet reported.
_OWED: Final = (
    "(reported = 0 AND task_id IN (SELECT id FROM schedule_tasks WHERE origin = 'cloud'))"
)


def last_runs(conn: sqlite3.Connection) -> dict[str, RunRow]:
    """The newest history row of each task that has one, by task id."""
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM schedule_runs WHERE seq IN "
        "(SELECT max(seq) FROM schedule_runs GROUP BY task_id)"
    )
    return {run.task_id: run for run in map(_run, rows)}


def history(conn: sqlite3.Connection, task_id: str | None = None, limit: int = 50) -> list[RunRow]:
    """History rows, newest first: of one task (by id), or of all."""
    if task_id is None:
        rows = conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM schedule_runs ORDER BY seq DESC LIMIT ?", (limit,)
        )
    else:
        rows = conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM schedule_runs WHERE task_id = ? ORDER BY seq DESC LIMIT ?",
            (task_id, limit),
        )
    return [_run(row) for row in rows]


def unreported(conn: sqlite3.Connection, limit: int = 1000) -> list[RunRow]:
    """Finished rows not yet told to the cloud, oldest first."""
    rows = conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM schedule_runs WHERE reported = 0 AND status != 'running' "
        "ORDER BY seq LIMIT ?",
        (limit,),
    )
    return [_run(row) for row in rows]


def mark_reported(conn: sqlite3.Connection, seqs: list[int]) -> None:
    """Note that the rows ``seqs`` were told to the cloud."""
    conn.executemany("UPDATE schedule_runs SET reported = 1 WHERE seq = ?", [(s,) for s in seqs])
