"""The tunnel's journal: the calls running and the results the cloud has not confirmed.

With a store (``edge.store``), everything the cloud is owed survives a crash
or a ``kill -9``::

    accept(id, tool)      a row in journal_calls: this call is running (written
                          with the next batch, at most ACCEPT_DELAY later, so a
                          call that ends sooner costs no write of its own)
    put_result(id, text)  the result goes to the outbox at once (it is usually on
                          the socket before this returns), and the writer task
                          commits it (and deletes its call's row) beside it, in
                          one transaction with everything else pending: at once
                          when it could not be sent, else with the batch that
                          comes within ACCEPT_DELAY (one commit for many calls)
    sent (outbox)         the row is marked sent, with the next batch
    gone (outbox)         confirmed by a pong, or dropped past the bound: row deleted
                          (a result confirmed before its batch ran is never written)

Sending before the commit loses nothing: a result is forgotten only once a pong
confirms it, and the pong comes at least ``CONFIRM_DELAY`` after the send, while
the commit takes a millisecond or so. Killed between the send and the commit,
edge has either put the result on the socket, which the kernel still delivers,
or it has not, and then its commit was not delayed (the call's row, written
within ``ACCEPT_DELAY`` of its start, covers the instant before: the next start
answers it "interrupted"); a result that arrives twice is
deduplicated by id, as every result resent after a reconnect is. Keeping the
commit off the path saves the round trip a thread hand-off costs on every call.

At start-up ``recover`` answers every call still journaled as running with an
"interrupted" error result (journaled like any other), imports the
``outbox.jsonl`` an older edge left, and queues every journaled result to be
sent after the next handshake. Ids are kept as their JSON encoding, so a
string id stays a string and an integer an integer.

Without a store (no state directory, or one that cannot be opened) the journal
says so in the log and results go straight to the outbox, in memory.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio

from ..protocol import encode, error_result, tool_response
from ..store import Store
from .outbox import MAX_RESULTS, Entry, Outbox

log = logging.getLogger(__name__)

#: The error an interrupted call gets when edge starts again.
INTERRUPTED: Final = "edge stopped while this call was running"
#: Seconds an accepted call may wait for its row to be written. A call that ends
#: sooner has its row and its result in one batch, which writes the result only;
#: edge killed within this time of accepting a call gives that call no answer.
ACCEPT_DELAY: Final = 0.05


@dataclass(frozen=True, slots=True)
class _Accept:
    call_id: str
    tool: str
    at: float


@dataclass(frozen=True, slots=True)
class _Finish:
    call_id: str
    entry: Entry
    at: float


@dataclass(frozen=True, slots=True)
class _Row:
    """A result as the store's thread writes it: what the entry said when the batch began."""

    call_id: str
    text: str
    at: float
    sent: bool
    gone: bool


#: What the writer task commits, in order: calls, results, sent marks, removals.
_Op = _Accept | _Finish | tuple[str, int]
_Write = _Accept | _Row | tuple[str, int]


class Journal:
    """The journal of one tunnel; ``run()`` is its writer task, ``close()`` its last flush."""

    def __init__(self, store: Store | None = None, max_results: int = MAX_RESULTS) -> None:
        self._store = store
        self.outbox = Outbox(max_results, on_sent=self._sent, on_gone=self._gone)
        self._ops: list[_Op] = []
        self._results_pending = 0
        self._wakeup = trio.Event()
        self._due = math.inf  # when the writer must write the calls accepted meanwhile
        self._waiting: trio.CancelScope | None = None
        self._released = trio.Event()
        self._released.set()

    @property
    def durable(self) -> bool:
        """Whether results are journaled in the store (else kept in memory only)."""
        return self._store is not None

    def __len__(self) -> int:
        """Results not yet confirmed."""
        return len(self.outbox)

    # -- what the tunnel calls (synchronous, never blocks) ------------------------------

    def accept(self, call_id: str | int, tool: str) -> None:
        """A call was accepted for running."""
        if self._store is None:
            return
        self._ops.append(_Accept(_key(call_id), tool, time.time()))
        self._write_within(ACCEPT_DELAY)

    def _write_within(self, seconds: float) -> None:
        due = trio.current_time() + seconds
        if due < self._due:
            self._due = due
            if self._waiting is not None:
                self._waiting.deadline = due

    def put_result(self, call_id: str | int, text: str) -> None:
        """A call's encoded response: queued to send now, and to commit beside it."""
        if self._store is None:
            self.outbox.put_result(text)
            return
        self._results_pending += 1
        if self._released.is_set():
            self._released = trio.Event()
        entry = Entry(text)
        self._ops.append(_Finish(_key(call_id), entry, time.time()))
        self.outbox.put_entry(entry)
        if entry.sent and not self.outbox.held():
            # On the socket already: the kernel delivers it even if edge is killed now,
            # so its commit may wait for the batch that comes within ACCEPT_DELAY.
            self._write_within(ACCEPT_DELAY)
        else:
            self._wakeup.set()  # waiting for a connection: committed at once

    def _sent(self, key: int) -> None:
        # Rides along with the next batch: it only matters for counting resends.
        if self._store is not None:
            self._ops.append(("sent", key))

    def _gone(self, keys: list[int]) -> None:
        if self._store is not None:
            for key in keys:
                self._queue(("gone", key))

    def _queue(self, op: _Op) -> None:
        self._ops.append(op)
        self._wakeup.set()

    async def wait_released(self) -> None:
        """Return once every result handed to the journal has been committed (or the
        store failed and they are kept in memory only)."""
        await self._released.wait()

    # -- the writer ----------------------------------------------------------------------

    async def run(self) -> None:
        """Commit what is pending in batches until cancelled (then ``close()`` flushes)."""
        while True:
            if not self._wakeup.is_set():
                with trio.CancelScope(deadline=self._due) as self._waiting:
                    await self._wakeup.wait()
                self._waiting = None
            self._wakeup = trio.Event()
            self._due = math.inf
            if self._ops:
                await self._write_batch()

    async def flush(self) -> None:
        """Commit everything pending now, the calls accepted meanwhile included."""
        while self._ops and self._store is not None:
            await self._write_batch()

    async def close(self) -> None:
        """``flush()``, shielded: call it on the way out."""
        with trio.CancelScope(shield=True):
            await self.flush()

    async def _write_batch(self) -> None:
        store = self._store
        ops, self._ops = self._ops, []
        if store is None:
            self._release(ops, None)
            return
        ran = False
        writes = [_as_written(op) for op in ops]

        def apply(conn: sqlite3.Connection) -> list[int]:
            nonlocal ran
            ran = True
            return _apply(conn, writes)

        try:
            keys = await store.write(apply)
        except sqlite3.Error as exc:
            log.error(
                "journal: the store %s failed (%s); keeping results in memory only from now on",
                store.path,
                exc,
            )
            self._store = None
            self._release(ops, None)
            return
        except BaseException:
            if not ran:  # cancelled before it started: nothing was written
                self._ops[:0] = ops
            raise
        self._release(ops, keys, writes)

    def _release(
        self, ops: list[_Op], keys: list[int] | None, writes: list[_Write] | None = None
    ) -> None:
        """After the commit: each entry gets its key; what happened to it meanwhile (sent,
        confirmed) rides the next batch."""
        finished = [op for op in ops if isinstance(op, _Finish)]
        if keys is not None and writes is not None:
            rows = [w for w in writes if isinstance(w, _Row)]
            for op, row, key in zip(finished, rows, keys, strict=True):
                if not key:
                    continue  # confirmed before the batch began: never written
                entry = op.entry
                entry.key = key
                if entry.gone:
                    self._queue(("gone", key))
                elif entry.sent and not row.sent:  # sent while the batch was written
                    self._ops.append(("sent", key))
        self._results_pending -= len(finished)
        if self._results_pending == 0:
            self._released.set()

    # -- start-up -------------------------------------------------------------------------

    async def recover(self, legacy: Path | None = None) -> None:
        """Queue what an earlier run left: journaled results, interrupted calls, a JSONL file."""
        store = self._store
        if store is None:
            kept = [] if legacy is None else await trio.to_thread.run_sync(read_jsonl, legacy)
            if kept:
                log.warning(
                    "%d results from %s wait for the cloud in memory (without a store "
                    "the file stays, for a later run)",
                    len(kept),
                    legacy,
                )
                self.outbox.restore([Entry(text) for text in kept])
            return
        try:
            found = await store.write(lambda conn: _recover(conn, legacy))
        except sqlite3.Error as exc:
            log.error("journal: cannot read %s (%s); keeping results in memory", store.path, exc)
            self._store = None
            return
        if legacy is not None and found.imported:
            await trio.to_thread.run_sync(_unlink, legacy)
        self.outbox.restore(found.entries)
        if found.entries:
            sent = sum(e.sent for e in found.entries)
            log.info(
                "%d results from the last run wait for the cloud (%d interrupted calls, "
                "%d from %s, %d sent before but not confirmed)",
                len(found.entries),
                found.interrupted,
                found.imported,
                legacy.name if legacy is not None else "-",
                sent,
            )


@dataclass(frozen=True, slots=True)
class _Found:
    entries: list[Entry]
    interrupted: int
    imported: int


def _key(call_id: str | int) -> str:
    return json.dumps(call_id)


def _call_id(key: str | None) -> Any:
    return None if key is None else json.loads(key)


def interrupted_result(call_id: str | int, tool: str | None = None) -> str:
    """The frame a call still running when edge stopped gets at the next start."""
    fields: dict[str, Any] = {"interrupted": True}
    if tool is not None:
        fields["tool"] = tool
    return encode(tool_response(call_id, error_result(INTERRUPTED, **fields)))


def read_jsonl(path: Path) -> list[str]:
    """The JSON frames of an ``outbox.jsonl`` an older edge kept, one a line (others skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("cannot read undelivered results from %s: %s", path, exc)
        return []
    kept = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            continue
        kept.append(line)
    return kept


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError as exc:
        log.warning("cannot remove %s after importing it: %s", path, exc.strerror)


# -- in the store's worker thread ----------------------------------------------------------


def _as_written(op: _Op) -> _Write:
    """``op`` as plain data for the store's thread (an entry's flags read once, here)."""
    if isinstance(op, _Finish):
        entry = op.entry
        return _Row(op.call_id, entry.text, op.at, entry.sent, entry.gone)
    return op


def _apply(conn: sqlite3.Connection, ops: list[_Write]) -> list[int]:
    """Write a batch; the key of each result row, in order (0: not written, it was gone)."""
    keys: list[int] = []
    finished_later: set[str] = set()
    ended: set[int] = set()  # accepts whose call finishes later in the same batch: never written
    for i in range(len(ops) - 1, -1, -1):
        op = ops[i]
        if isinstance(op, _Row):
            finished_later.add(op.call_id)
        elif isinstance(op, _Accept) and op.call_id in finished_later:
            ended.add(i)
    for i, op in enumerate(ops):
        if i in ended:
            continue
        if isinstance(op, _Accept):
            conn.execute(
                "INSERT OR REPLACE INTO journal_calls (call_id, tool, accepted_at) "
                "VALUES (?, ?, ?)",
                (op.call_id, op.tool, op.at),
            )
        elif isinstance(op, _Row):
            if op.gone:
                keys.append(0)
            else:
                keys.append(_insert_result(conn, op.call_id, op.text, op.at, op.sent))
            conn.execute("DELETE FROM journal_calls WHERE call_id = ?", (op.call_id,))
        elif op[0] == "sent":
            conn.execute("UPDATE journal_results SET sent = 1 WHERE seq = ?", (op[1],))
        else:
            conn.execute("DELETE FROM journal_results WHERE seq = ?", (op[1],))
    return keys


def _insert_result(
    conn: sqlite3.Connection, call_id: str | None, text: str, at: float, sent: bool = False
) -> int:
    cursor = conn.execute(
        "INSERT INTO journal_results (call_id, frame, finished_at, sent) VALUES (?, ?, ?, ?)",
        (call_id, text, at, int(sent)),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _recover(conn: sqlite3.Connection, legacy: Path | None) -> _Found:
    now = time.time()
    imported = 0
    if legacy is not None:
        for text in read_jsonl(legacy):
            frame_id = _frame_id(text)
            _insert_result(conn, None if frame_id is None else _key(frame_id), text, now)
            imported += 1
    calls = conn.execute("SELECT call_id, tool FROM journal_calls ORDER BY accepted_at").fetchall()
    for key, tool in calls:
        _insert_result(conn, key, interrupted_result(_call_id(key), tool), now)
    conn.execute("DELETE FROM journal_calls")
    rows = conn.execute("SELECT seq, frame, sent FROM journal_results ORDER BY seq").fetchall()
    entries = [Entry(frame, seq, bool(sent)) for seq, frame, sent in rows]
    return _Found(entries, len(calls), imported)


def _frame_id(text: str) -> str | int | None:
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    value = frame.get("id") if isinstance(frame, dict) else None
    return value if isinstance(value, str | int) else None
