"""The scheduler: tool runs on a timetable that survives restarts and daylight saving.

Modules:
    timetable  -- Timetable (once, interval, cron in a zone), parse_duration, parse_at,
                  catch_up (what to do about missed slots): plain code, no trio
    records    -- the store's tables (migration 2): TaskRow, RunRow and the functions of a
                  sqlite3 connection the handle and the command line use
    alarm      -- WallClock: SystemClock (a timerfd on CLOCK_REALTIME and trio's clock at
                  once; suspend and clock steps noticed), VirtualClock for tests
    scheduler  -- Scheduler, serve_scheduler: the handle, one loop that sleeps until the
                  next deadline, one task per run
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The names load on first use: ``timetable`` is plain code that edge.protocol and the
# command line import without paying for trio, which ``alarm`` and ``scheduler`` import.
if TYPE_CHECKING:
    from .alarm import SystemClock, VirtualClock, WallClock
    from .records import MIGRATION, RunRow, TaskRow
    from .scheduler import RunTool, Scheduler, serve_scheduler
    from .timetable import (
        CatchUp,
        MissedPolicy,
        Timetable,
        catch_up,
        cron,
        default_grace,
        every,
        once,
        parse_at,
        parse_duration,
    )

_WHERE = {
    "SystemClock": "alarm", "VirtualClock": "alarm", "WallClock": "alarm",
    "MIGRATION": "records", "RunRow": "records", "TaskRow": "records",
    "RunTool": "scheduler", "Scheduler": "scheduler", "serve_scheduler": "scheduler",
    "CatchUp": "timetable", "MissedPolicy": "timetable", "Timetable": "timetable",
    "catch_up": "timetable", "cron": "timetable", "default_grace": "timetable",
    "every": "timetable", "once": "timetable", "parse_at": "timetable",
    "parse_duration": "timetable",
}  # fmt: skip

__all__ = [
    "MIGRATION",
    "CatchUp",
    "MissedPolicy",
    "RunRow",
    "RunTool",
    "Scheduler",
    "SystemClock",
    "TaskRow",
    "Timetable",
    "VirtualClock",
    "WallClock",
    "catch_up",
    "cron",
    "default_grace",
    "every",
    "once",
    "parse_at",
    "parse_duration",
    "serve_scheduler",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
