"""The scheduler routes: the tasks, a new one, run, pause, resume, remove, the history.

::

    GET  /schedule                  {"tasks": [...], "info": {...}}: every task, sorted by next
                                    run, each with its last run ("lastRun", or null)
    POST /schedule                  {"at"|"every"|"cron", "tz"?, "tool", "args"?, "name"?,
                                    "missed"?, "grace"?}: a new task (201 {"task": ...})
    POST /schedule/ID/run           run it now, wait for the end: {"run": ...} (409 while
                                    it runs already)
    POST /schedule/ID/pause         {"task": ...}
    POST /schedule/ID/resume        {"task": ...} (the next slot from now: no catch-up)
    POST /schedule/ID/remove        {"removed": ID} (its history goes too)
    GET  /schedule/history          ?task=ID&limit=N (1 to 1000, default 50): {"runs": [...]},
                                    newest first

A task runs a tool with the local policy alone, as ``POST /tools/call`` does, so
every state change needs the local key (``X-Edge-Key``, ``edge.control.key``): 403
without it. The fields of a new task are read by ``edge.protocol.schedule.parse_task``;
a bad one, or a tool that is unknown or that the local policy does not allow, is a 400
with the message. An unknown task id is a 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

from ..errors import BadRequest
from .body import json_reply, read_json
from .key import require_key

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from ..scheduler.records import TaskRow
    from ..scheduler.scheduler import Scheduler
    from .key import LocalKey

#: The most runs ``GET /schedule/history`` gives.
MAX_HISTORY: Final = 1000
#: What ``GET /schedule/history`` gives without ``limit``.
DEFAULT_HISTORY: Final = 50


class ScheduleControl(Protocol):
    """The daemon's scheduler, and the local policy a new task's tool is held to."""

    @property
    def scheduler(self) -> Scheduler | None:
        """The scheduler handle (``edge.scheduler.Scheduler``), ``None`` while it is down."""

    def refusal(self, tool: str) -> str | None:
        """Why ``tool`` may not be scheduled (unknown, not allowed here), else ``None``."""


def find_task(scheduler: Scheduler, ref: str) -> TaskRow | None:
    """The task whose id, or else whose name, is ``ref``."""
    task = scheduler.get(ref)
    if task is None:
        task = next((t for t in scheduler.tasks() if t.name == ref), None)
    return task


def _no_task(task_id: str) -> Response:
    return json_reply({"error": f"no scheduled task {task_id!r}"}, status_code=404)


def routes(target: ScheduleControl, key: LocalKey | None) -> list[Route]:
    """The /schedule routes over ``target``; state changes need ``key``."""
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    def current() -> Scheduler:
        scheduler = target.scheduler
        if scheduler is None:
            raise HTTPException(503, "the scheduler is not running now (see edge's log)")
        return scheduler

    async def listing(request: Request) -> Response:
        scheduler = current()
        last = await scheduler.last_runs()
        tasks = []
        for task in scheduler.tasks():
            run = last.get(task.id)
            tasks.append({**task.to_json(), "lastRun": run.to_json() if run else None})
        return json_reply({"tasks": tasks, "info": scheduler.info()})

    async def add(request: Request) -> Response:
        from ..protocol.schedule import parse_task  # the timetables: only when one is made

        require_key(request.headers, key)
        try:
            spec = parse_task(await read_json(request))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        why = target.refusal(spec.tool)
        if why is not None:
            raise BadRequest(why)
        try:
            task = await current().add(
                timetable=spec.timetable,
                tool=spec.tool,
                args=spec.args,
                name=spec.name,
                missed=spec.missed,
                grace=spec.grace,
                origin="local",
            )
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return json_reply({"task": task.to_json()}, status_code=201)

    async def act(request: Request) -> Response:
        require_key(request.headers, key)
        ref: str = request.path_params["task_id"]
        action: str = request.path_params["action"]
        scheduler = current()
        task = find_task(scheduler, ref)
        if task is None:
            return _no_task(ref)
        task_id = task.id
        try:
            if action == "run":
                run = await scheduler.run_now(task_id)
                return json_reply({"run": run.to_json()})
            if action == "pause":
                return json_reply({"task": (await scheduler.pause(task_id)).to_json()})
            if action == "resume":
                return json_reply({"task": (await scheduler.resume(task_id)).to_json()})
            if action == "remove":
                if not await scheduler.remove(task_id):
                    return _no_task(task_id)
                return json_reply({"removed": task_id})
        except KeyError:
            return _no_task(task_id)
        except ValueError as exc:  # a run going already
            return json_reply({"error": str(exc)}, status_code=409)
        return json_reply(
            {"error": f"unknown action {action!r}: run, pause, resume or remove"}, status_code=404
        )

    async def history(request: Request) -> Response:
        task_id = request.query_params.get("task") or None
        raw = request.query_params.get("limit")
        limit = DEFAULT_HISTORY
        if raw is not None:
            if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_HISTORY:
                raise BadRequest(f"limit must be a whole number from 1 to {MAX_HISTORY}")
            limit = int(raw)
        scheduler = current()
        if task_id is not None:
            task = find_task(scheduler, task_id)
            if task is None:
                return _no_task(task_id)
            task_id = task.id
        runs = await scheduler.history(task_id, limit)
        return json_reply({"runs": [run.to_json() for run in runs]})

    return [
        Route("/schedule", listing, methods=["GET"]),
        Route("/schedule", add, methods=["POST"]),
        Route("/schedule/history", history, methods=["GET"]),
        Route("/schedule/{task_id}/{action}", act, methods=["POST"]),
    ]
