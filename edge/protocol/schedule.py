"""The scheduler's messages, as plain code: a new task's fields checked into a timetable,
the cloud's ``schedule_*`` requests read, their answers and the ``schedule_run``
notification built.

One reader, ``parse_task``, serves every way a task is made: the cloud's
``schedule_add`` params, the control API's ``POST /schedule`` body and ``edge schedule
add`` without a daemon. Its fields::

    exactly one of
      "at"     an ISO 8601 date-time ("2026-12-02T09:00", with an offset or Z, else in
               "tz" or the local zone), "HH:MM" (the next such local time), or epoch seconds;
               at most 100 years ahead
      "every"  a duration ("90s", "5m", "2h", "1h30m") or a number of seconds, at least 1;
               the slots are the time of adding + k * every
      "cron"   five cron fields ("30 1 * * *"), meant in "tz" (default: the local zone)
    "tz"       an IANA zone name (Europe/Berlin), for "at" and "cron"
    "tool"     the tool to run (a name)
    "args"?    its arguments: a JSON object (default {})
    "name"?    a name for people
    "missed"?  "run-once" (default) or "skip": what a slot missed while edge was stopped
    "grace"?   seconds after a missed slot within which "run-once" still runs it

Every problem is a ``ValueError`` whose message is fit to show to whoever sent it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, cast

from ..scheduler.timetable import (
    MissedPolicy,
    Timetable,
    cron,
    every,
    once,
    parse_at,
    parse_duration,
)
from .results import error_result

#: The fields ``parse_task`` reads.
TASK_FIELDS: Final = ("at", "every", "cron", "tz", "tool", "args", "name", "missed", "grace")
#: The timetable kinds, one of which a task names.
KINDS: Final = ("at", "every", "cron")
#: The missed-run policies.
MISSED: Final = ("run-once", "skip")
#: Longest name, tool name, time text and zone name (characters).
MAX_NAME: Final = 100
MAX_TOOL: Final = 256
MAX_TEXT: Final = 200
#: Longest grace (seconds): a day.
MAX_GRACE: Final = 86_400.0
#: Longest interval (seconds): a year.
MAX_EVERY: Final = 366 * 86_400.0
#: The method of the notification that reports a cloud task's run.
RUN_METHOD: Final = "schedule_run"


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A new task, checked: what ``Scheduler.add`` (or ``records.insert_task``) takes."""

    timetable: Timetable
    tool: str
    args: dict[str, Any] = field(hash=False)
    name: str | None = None
    missed: MissedPolicy = "run-once"
    grace: float | None = None


def _text(params: Mapping[str, Any], key: str, most: int) -> str | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f'"{key}" must be a non-empty string')
    if len(value) > most:
        raise ValueError(f'"{key}" is longer than {most} characters')
    return value.strip()


def _number(value: object) -> float | None:
    """``value`` as a finite number, ``None`` when it is not one (a bool is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _timetable(params: Mapping[str, Any], now: float) -> Timetable:
    kinds = [k for k in KINDS if params.get(k) is not None]
    if len(kinds) != 1:
        raise ValueError('give exactly one of "at", "every" and "cron"')
    (kind,) = kinds
    tz = _text(params, "tz", MAX_TEXT)
    if tz is not None and kind == "every":
        raise ValueError('"tz" goes with "at" or "cron", not with "every"')
    raw = params[kind]
    if kind == "cron":
        if not isinstance(raw, str):
            raise ValueError('"cron" must be five cron fields in a string, e.g. "30 1 * * *"')
        return cron(raw.strip(), tz)
    number = _number(raw)
    if number is None and not (isinstance(raw, str) and 0 < len(raw) <= MAX_TEXT):
        what = "a date-time or HH:MM" if kind == "at" else "a duration such as 5m"
        raise ValueError(f'"{kind}" must be {what} (a string), or a number of seconds')
    if kind == "every":
        seconds = number if number is not None else parse_duration(cast(str, raw))
        if not 1 <= seconds <= MAX_EVERY:
            raise ValueError(f'"every" must be from 1 second to 366 days, not {seconds:g} s')
        return every(seconds, anchor=now)
    at = number if number is not None else parse_at(cast(str, raw), tz=tz, now=now)
    if at <= now:
        raise ValueError(f'"at" is in the past ({raw})')
    return once(at)


def parse_task(params: Mapping[str, Any], *, now: float | None = None) -> TaskSpec:
    """A new task's fields (see the module docstring) checked into a ``TaskSpec``.

    ``now`` (epoch seconds, default the clock) anchors an interval and is what "in the
    past" and "HH:MM" are measured from.

    Raises:
        ValueError: a field is missing, unknown, of the wrong type or out of range;
            the message says which and what was expected.
    """
    now = time.time() if now is None else now
    unknown = sorted(str(k) for k in params if k not in TASK_FIELDS)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; a task has: {', '.join(TASK_FIELDS)}")
    tool = _text(params, "tool", MAX_TOOL)
    if tool is None:
        raise ValueError('"tool" must name the tool to run')
    args = params.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ValueError('"args" must be a JSON object')
    missed = params.get("missed", "run-once")
    if missed is None:
        missed = "run-once"
    if missed not in MISSED:
        raise ValueError(f'"missed" must be "run-once" or "skip", not {missed!r}')
    grace: float | None = None
    if params.get("grace") is not None:
        grace = _number(params["grace"])
        if grace is None or not 0 < grace <= MAX_GRACE:
            raise ValueError(f'"grace" must be a number of seconds above 0, at most {MAX_GRACE:g}')
    return TaskSpec(
        timetable=_timetable(params, now),
        tool=tool,
        args=dict(args),
        name=_text(params, "name", MAX_NAME),
        missed=cast(MissedPolicy, missed),
        grace=grace,
    )


def task_id_param(params: Mapping[str, Any]) -> str:
    """The task id a ``schedule_remove`` names (``{"id": "s-1a2b3c"}``).

    Raises:
        ValueError: there is none, or it is not a short string.
    """
    task_id = params.get("id")
    if not isinstance(task_id, str) or not task_id or len(task_id) > MAX_NAME:
        raise ValueError('schedule_remove needs "params": {"id": "<task id>"}')
    return task_id


# -- answers and notifications ------------------------------------------------------------


def task_answer(task: Mapping[str, Any]) -> dict[str, Any]:
    """``schedule_add``'s answer: the task as ``TaskRow.to_json`` gives it."""
    return {"task": dict(task)}


def list_answer(tasks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``schedule_list``'s answer: the tasks the cloud created."""
    return {"tasks": [dict(t) for t in tasks]}


def removed_answer(task_id: str) -> dict[str, Any]:
    """``schedule_remove``'s answer."""
    return {"removed": task_id}


def refused(message: str) -> dict[str, Any]:
    """The answer to a ``schedule_*`` request edge turned down: ``{"error": message}``."""
    return error_result(message)


def run_key(seq: int) -> str:
    """The durable key of a run's ``schedule_run`` notification: one per run."""
    return f"{RUN_METHOD}:{seq}"


def run_notification(run: Mapping[str, Any], task: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``schedule_run`` notification reporting a finished run of a cloud's task.

    ``run`` is ``RunRow.to_json()``; ``task`` the task's ``to_json()`` when it still
    exists (its name, tool and schedule go along).
    """
    params: dict[str, Any] = {k: v for k, v in run.items() if k != "reported"}
    if task is not None:
        for key in ("name", "tool", "schedule"):
            params.setdefault(key, task.get(key))
    return {"jsonrpc": "2.0", "method": RUN_METHOD, "params": params}
