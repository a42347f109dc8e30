"""``edge schedule add|list|run|pause|resume|remove|history``: tool runs on a timetable.

The running daemon keeps and runs the tasks (the ``/schedule`` routes of its control
API, with the local key: a task can run any tool the local policy allows). With no
daemon, ``add``, ``list``, ``remove`` and ``history`` work on the store itself
(``edge.db`` in the state directory, ``edge.scheduler.records``), and say that
nothing runs until ``edge run``; ``run``, ``pause`` and ``resume`` need the daemon.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlencode

from .common import (
    ControlUnreachable,
    ParagraphFormatter,
    add_config_option,
    add_control_option,
    fail,
    load,
    plural,
)

if TYPE_CHECKING:
    import sqlite3

#: Seconds a request to the daemon may take (``run`` waits for the run: see RUN_TIMEOUT).
TIMEOUT: Final = 10.0
#: Seconds ``edge schedule run`` waits for the run to end: the longest call timeout, and a
#: minute more.
RUN_TIMEOUT: Final = 3660.0
#: Rows ``edge schedule history`` shows unless told.
HISTORY: Final = 20
#: What a command without a daemon says about running.
NOTHING_RUNS: Final = "nothing runs until edge run"

DESCRIPTION: Final = """\
Run a tool on a timetable. The running daemon keeps the tasks in its store, so they
survive restarts, and runs each slot as a tool call of its own, on its workers, under
the local policy (as edge tools call does).
"""

EPILOG: Final = """\
kinds:
- --at TIME: once. TIME is an ISO 8601 date-time, with an offset or Z (2026-12-02T08:00Z,
2026-12-02T09:00+01:00), or without one in the local zone or --tz (2026-12-02T09:00), or
HH:MM: the next such local time. A local time that does not exist (in the hour the clocks
skip in spring) is refused; one that happens twice (autumn) means the first.
- --every DURATION: 90s, 5m, 2h, 1h30m, 1d or seconds (at least 1). The slots are the time
of adding plus multiples of it; a late run never shifts the next ones.
- --cron "EXPR": five fields (minute hour day month weekday), in --tz or the local zone.
Across daylight-saving changes a job at a fixed time runs once a day: on the autumn night
a 01:30 job runs at the first 01:30, on the spring night a 02:30 job runs at 03:00.

missed runs:
While edge is stopped or the machine sleeps, slots pass. --missed run-once (the default)
runs the latest of them once when edge is back, if it is not older than the grace (half
the period, from 1 min to 2 h; 1 h for --at; --grace S sets it); the others are recorded
as missed, never run in a burst. --missed skip records them all as missed. A slot whose
previous run still goes is recorded as "skipped: still running".

examples:
  edge schedule add --every 5m terminal --args '{"command": "df -h /"}' --name disk
  edge schedule add --cron "30 1 * * *" --tz Europe/Berlin terminal --args '{"command": "backup"}'
  edge schedule add --at 09:00 terminal --args '{"command": "notify-send hello"}'
  edge schedule list                   next run in local time, last status
  edge schedule run disk               now, and print the result
  edge schedule pause disk; edge schedule resume disk
  edge schedule history disk
  edge schedule remove disk

A task is named by its id (s-1a2b3c) or its name. Tasks the cloud scheduled are listed
too ("cloud"); [scheduler] cloud_tasks = false in config.toml refuses them.
"""


def add_parser(subparsers: Any) -> None:
    schedule = subparsers.add_parser(
        "schedule",
        help="run tools on a timetable: add, list, run, pause, resume, remove, history",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=ParagraphFormatter,
    )
    actions = schedule.add_subparsers(dest="schedule_command", metavar="ACTION", required=True)

    add = actions.add_parser(
        "add",
        help="schedule a tool: --at, --every or --cron",
        description="Schedule TOOL with --args. See edge schedule --help for the kinds, "
        "the time formats and the missed-run policy.",
        epilog="examples:" + EPILOG.split("examples:", 1)[1],
        formatter_class=ParagraphFormatter,
    )
    kind = add.add_mutually_exclusive_group(required=True)
    kind.add_argument("--at", metavar="TIME", help="once: an ISO 8601 date-time or HH:MM")
    kind.add_argument("--every", metavar="DURATION", help="repeat: 90s, 5m, 2h, 1h30m, 1d")
    kind.add_argument("--cron", metavar="EXPR", help='five cron fields, e.g. "30 1 * * *"')
    add.add_argument("--tz", metavar="ZONE", help="the zone of --cron or --at (e.g. Europe/Berlin)")
    add.add_argument("tool", metavar="TOOL", help="the tool to run, e.g. terminal")
    add.add_argument("--args", default="{}", metavar="JSON", help="its arguments (a JSON object)")
    add.add_argument("--name", metavar="NAME", help="a name to use instead of the id")
    add.add_argument(
        "--missed", choices=("run-once", "skip"), help="what a slot missed while edge was "
        "stopped does (default run-once)",
    )  # fmt: skip
    add.add_argument("--grace", type=float, metavar="S", help="how late run-once still runs")
    _common(add)
    add.set_defaults(handler=handle_add)

    listing = actions.add_parser("list", help="every task: schedule, next run, last status")
    listing.add_argument("--json", action="store_true", help="print the JSON")
    _common(listing)
    listing.set_defaults(handler=handle_list)

    for name, help_text in (
        ("run", "run a task now and print the result (needs the daemon)"),
        ("pause", "stop a task's runs until resumed (needs the daemon)"),
        ("resume", "take up a paused task from now on: no catch-up (needs the daemon)"),
        ("remove", "remove a task and its history"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("task", metavar="ID", help="the task's id or name")
        _common(action)
        action.set_defaults(handler=handle_action, action=name)

    history = actions.add_parser("history", help="the runs and missed slots, newest first")
    history.add_argument("task", metavar="ID", nargs="?", help="one task (default: all)")
    history.add_argument(
        "--limit", type=int, default=HISTORY, metavar="N", help="rows (default %(default)s)"
    )
    history.add_argument("--json", action="store_true", help="print the JSON")
    _common(history)
    history.set_defaults(handler=handle_history)


def _common(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser, help="the daemon's config.toml, for its state directory "
                      "(default: config.toml in the user config dir, if any)")  # fmt: skip
    add_control_option(parser)


# --- how tasks and runs read -----------------------------------------------------------


def local_time(epoch: float | None) -> str:
    """Epoch seconds as local time: ``HH:MM:SS`` today, with the date on other days."""
    if epoch is None:
        return "-"
    when = datetime.fromtimestamp(epoch).astimezone()
    if when.date() == datetime.now().astimezone().date():
        return when.strftime("%H:%M:%S")
    return when.strftime("%Y-%m-%d %H:%M")


def _last(run: dict[str, Any] | None) -> str:
    if not run:
        return "-"
    when = run.get("endedAt") or run.get("startedAt") or run.get("slot")
    return f"{run.get('status')} {local_time(when)}"


def task_lines(tasks: list[dict[str, Any]]) -> list[str]:
    """``edge schedule list``'s table: one line per task."""
    rows = [("ID", "NAME", "SCHEDULE", "TOOL", "NEXT RUN", "LAST", "")]
    for t in tasks:
        flags = [f for f, on in (("paused", t.get("paused")), ("cloud", t.get("origin") == "cloud"))
                 if on]  # fmt: skip
        next_run = "paused" if t.get("paused") else local_time(t.get("nextRun"))
        rows.append((
            str(t.get("id")), t.get("name") or "-", str(t.get("schedule")), str(t.get("tool")),
            next_run, _last(t.get("lastRun")), ",".join(flags),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]  # fmt: skip


def run_lines(runs: list[dict[str, Any]]) -> list[str]:
    """``edge schedule history``'s lines: when, task, status, excerpt."""
    lines = []
    for run in runs:
        when = local_time(run.get("startedAt") or run.get("slot") or run.get("endedAt"))
        status = str(run.get("status"))
        if run.get("missed"):
            status += f" ({plural(int(run['missed']), 'slot')})"
        excerpt = " ".join(str(run.get("excerpt") or "").split())
        if len(excerpt) > 80:
            excerpt = excerpt[:79] + "…"
        lines.append(f"{when}  {run.get('taskId')}  {status}  {excerpt}".rstrip())
    return lines


def describe_task(task: dict[str, Any]) -> str:
    named = f" ({task['name']})" if task.get("name") else ""
    next_run = task.get("nextRunLocal") or "none"
    return f"{task['id']}{named}: {task['schedule']}, {task['tool']}; next run {next_run}"


# --- the daemon, or the store ----------------------------------------------------------


def _state_dir(args: argparse.Namespace) -> Path | None:
    return load(args, no_control=True).state_dir


def _request(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: Any = None,
    *,
    timeout: float = TIMEOUT,
) -> tuple[int, Any] | None:
    """One request to the daemon: (status, JSON answer); ``None`` when no daemon takes the
    connection (the caller may work on the store instead).

    Raises:
        ControlUnreachable: a daemon took the request but gave no answer.
    """
    from .common import ControlClient, key_headers

    headers = key_headers(args.control, _state_dir(args)) if method == "POST" else {}
    try:
        with ControlClient(args.control, timeout=timeout) as client:
            status, raw = client.request(method, path, body, headers)
    except ControlUnreachable as exc:
        if isinstance(exc.__cause__, ConnectionRefusedError):
            return None
        raise
    try:
        return status, json.loads(raw)
    except ValueError:
        raise ControlUnreachable(
            f"what answers on {args.control} is not an edge daemon (HTTP {status})"
        ) from None


def _answer_error(args: argparse.Namespace, status: int, answer: Any) -> int:
    """The daemon refused: its message, or what a 403 or a missing route means."""
    if status == 403:
        return fail(
            f"the daemon on {args.control} refused: its local key could not be read from "
            "the state directory, or is not this daemon's (another user's edge, or another "
            "--config?)",
            code=1,
        )
    if status == 404 and isinstance(answer, dict) and answer.get("error") == "Not Found":
        return fail(f"the daemon on {args.control} has no scheduler (an older edge?)", code=1)
    message = answer.get("error", answer) if isinstance(answer, dict) else answer
    return fail(str(message), code=2 if status == 400 else 1)  # 400: what was asked is wrong


def _open(args: argparse.Namespace) -> sqlite3.Connection:
    """The store of the config's state directory, for a command with no daemon.

    Raises:
        ConfigError: there is no state directory, or its store cannot be opened.
    """
    import sqlite3

    from ..errors import ConfigError
    from ..store import DB_FILE, daemon_running, open_sync

    state_dir = _state_dir(args)
    if state_dir is None:
        raise ConfigError("no state directory: there is no store to keep schedules in")
    if daemon_running(state_dir):
        raise ControlUnreachable(
            f"an edge daemon runs with the state directory {state_dir} but does not answer "
            f"on {args.control}: pass its control API's address with --control HOST:PORT "
            "(a daemon started with --no-control has none: stop it first, or the change "
            "would not reach it)"
        )
    try:
        return open_sync(state_dir / DB_FILE)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot open the store {state_dir / DB_FILE}: {exc}") from None


def _offline(args: argparse.Namespace, what: str) -> None:
    print(f"(no edge daemon answers on {args.control}: {what} the store; {NOTHING_RUNS})",
          file=sys.stderr)  # fmt: skip


# --- the handlers ----------------------------------------------------------------------


def _params(args: argparse.Namespace) -> dict[str, Any] | None:
    """The new task's fields, as ``POST /schedule`` takes them; ``None`` after an error."""
    try:
        call_args = json.loads(args.args)
    except ValueError as exc:
        fail(f"--args is not JSON: {exc}")
        return None
    if not isinstance(call_args, dict):
        fail('--args must be a JSON object, e.g. \'{"command": "ls"}\'')
        return None
    params: dict[str, Any] = {"tool": args.tool, "args": call_args}
    for key in ("at", "every", "cron", "tz", "name", "missed", "grace"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    return params


def handle_add(args: argparse.Namespace) -> int:
    params = _params(args)
    if params is None:
        return 2
    try:
        answer = _request(args, "POST", "/schedule", params)
    except ControlUnreachable as exc:
        return fail(f"{exc}; see edge schedule list before adding again", code=1)
    if answer is None:
        return _add_offline(args, params)
    status, body = answer
    if status != 201:
        return _answer_error(args, status, body)
    print(f"scheduled {describe_task(body['task'])}")
    return 0


def _add_offline(args: argparse.Namespace, params: dict[str, Any]) -> int:
    import time

    from ..protocol.schedule import parse_task
    from ..scheduler.records import TaskRow, insert_task, new_task_id
    from ..store import write_sync

    now = time.time()
    try:
        spec = parse_task(params, now=now)
    except (ValueError, OverflowError) as exc:
        return fail(str(exc))
    task = TaskRow(
        id=new_task_id(),
        name=spec.name,
        timetable=spec.timetable,
        tool=spec.tool,
        args=spec.args,
        missed=spec.missed,
        grace=spec.grace,
        origin="local",
        paused=False,
        created_at=now,
        next_slot=spec.timetable.next_slot(now),
        last_slot=None,
    )
    conn = _open(args)
    try:
        write_sync(conn, lambda c: insert_task(c, task))
    except ValueError as exc:
        return fail(str(exc), code=1)
    finally:
        conn.close()
    print(f"scheduled {describe_task(task.to_json())}")
    _offline(args, "added to")
    return 0


def handle_list(args: argparse.Namespace) -> int:
    try:
        answer = _request(args, "GET", "/schedule")
    except ControlUnreachable as exc:
        return fail(str(exc), code=1)
    if answer is None:
        tasks = _list_offline(args)
        _offline(args, "read from")
    else:
        status, body = answer
        if status != 200:
            return _answer_error(args, status, body)
        tasks = body.get("tasks", [])
    if args.json:
        print(json.dumps(tasks, indent=2))
    elif not tasks:
        print("no scheduled tasks; add one with: edge schedule add")
    else:
        print("\n".join(task_lines(tasks)))
    return 0


def _list_offline(args: argparse.Namespace) -> list[dict[str, Any]]:
    from ..scheduler.records import history, list_tasks

    conn = _open(args)
    try:
        tasks = []
        for task in sorted(list_tasks(conn), key=lambda t: (t.next_slot is None, t.next_slot)):
            last = history(conn, task.id, 1)
            tasks.append({**task.to_json(), "lastRun": last[0].to_json() if last else None})
        return tasks
    finally:
        conn.close()


def handle_action(args: argparse.Namespace) -> int:
    action: str = args.action
    timeout = RUN_TIMEOUT if action == "run" else TIMEOUT
    try:
        answer = _request(
            args, "POST", f"/schedule/{quote(args.task, safe='')}/{action}", timeout=timeout
        )
    except ControlUnreachable as exc:
        return fail(str(exc), code=1)
    if answer is None:
        if action == "remove":
            return _remove_offline(args)
        return fail(f"no edge daemon answers on {args.control}: {action} needs one "
                    "(start it with: edge run)", code=1)  # fmt: skip
    status, body = answer
    if status != 200:
        return _answer_error(args, status, body)
    if action == "run":
        run = body["run"]
        print(f"{run.get('taskId')}: {run.get('status')}")
        text = run.get("excerpt")
        if text:
            print(text, end="" if text.endswith("\n") else "\n")
        return 0 if run.get("status") == "ok" else 1
    if action == "remove":
        print(f"removed {body['removed']}")
    else:
        print(f"{action}d {describe_task(body['task'])}")
    return 0


def _remove_offline(args: argparse.Namespace) -> int:
    from ..scheduler.records import delete_task
    from ..store import write_sync

    conn = _open(args)
    try:
        removed = write_sync(conn, lambda c: delete_task(c, args.task))
    finally:
        conn.close()
    if not removed:
        return fail(f"no scheduled task {args.task!r}", code=1)
    print(f"removed {args.task}")
    _offline(args, "removed from")
    return 0


def handle_history(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        return fail("--limit must be from 1 to 1000")
    query = {"limit": str(args.limit), **({"task": args.task} if args.task else {})}
    try:
        answer = _request(args, "GET", f"/schedule/history?{urlencode(query)}")
    except ControlUnreachable as exc:
        return fail(str(exc), code=1)
    if answer is None:
        runs = _history_offline(args)
        if runs is None:
            return fail(f"no scheduled task {args.task!r}", code=1)
        _offline(args, "read from")
    else:
        status, body = answer
        if status != 200:
            return _answer_error(args, status, body)
        runs = body.get("runs", [])
    if args.json:
        print(json.dumps(runs, indent=2))
    elif not runs:
        print("no runs yet")
    else:
        print("\n".join(run_lines(runs)))
    return 0


def _history_offline(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    from ..scheduler.records import get_task, history

    conn = _open(args)
    try:
        task_id = None
        if args.task:
            task = get_task(conn, args.task)
            if task is None:
                return None
            task_id = task.id
        return [run.to_json() for run in history(conn, task_id, args.limit)]
    finally:
        conn.close()
