"""Restart supervision: one *lifetime* run again and again, with backoff and crash-loop parking.

A lifetime is an async function that runs one attempt of something long-lived
(one MCP session, one plugin child) and calls ``task_status.started()`` once
it is up. ``Supervisor.run`` runs it until cancelled::

    stopped ──run()──► starting ──task_status.started()──► running
                       ▲  ▲  ▲     │                         │
                       │  │  │     └──────── raised ─────┬───┘ raised
                       │  │  │                           ▼
                       │  │  │           failures within ``window``:
                       │  │  │     fewer than ``failures``   ``failures``
                       │  │  │                 ▼               ▼
                       │  │  └─ delay over ─ backing-off     parked
                       │  └──────────────── park over ─────────┘
                       └─ returned, from starting or running (on purpose: no failure)

    cancelled, in any state ──► stopped

A lifetime that raises has failed; the reason is ``describe(exc)``. Each
failure is stamped with the time; a run that lasted ``stable_after`` seconds
first clears the earlier stamps, stamps older than ``window`` seconds drop, and
``failures`` stamps park the supervisor for ``park_seconds``; after a park the
count and the backoff start afresh. Between failures the supervisor waits the
``edge.net.backoff.Backoff`` delay: none for the first failure after a run came
up, then ``backoff_first``, doubling up to ``backoff_cap``, plus jitter.

A lifetime that returns ended on purpose (an idle session closed, say): the
next run starts at once and no failure is counted, so such a lifetime first
waits for a reason to run again.

Every state change is set on ``Supervisor.state`` (an ``edge.watch.Watched``)
and passed to ``on_change``. Times are on trio's clock (``trio.current_time()``).
"""

from __future__ import annotations

import collections
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal, NoReturn, Protocol, final

import trio

from .net.backoff import Backoff
from .net.errors import describe_error
from .watch import Watched

__all__ = ["Lifetime", "RestartPolicy", "Restarts", "State", "Status", "Supervisor"]

log = logging.getLogger(__name__)

#: Failures within ``RESTART_WINDOW`` that park a supervisor.
RESTART_FAILURES: Final = 5
#: Seconds within which ``RESTART_FAILURES`` failures park a supervisor.
RESTART_WINDOW: Final = 60.0
#: Seconds a run must last for the failures before it to be forgotten.
STABLE_AFTER: Final = 30.0
#: Seconds a parked supervisor waits before it tries again.
PARK_SECONDS: Final = 300.0
#: Seconds of the first backoff delay after a failure that follows another.
BACKOFF_FIRST: Final = 0.5
#: The longest backoff delay (seconds).
BACKOFF_CAP: Final = 30.0
#: Up to this share of a backoff delay is added at random.
BACKOFF_JITTER: Final = 0.1

Status = Literal["starting", "running", "backing-off", "parked", "stopped"]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When to restart, and when to stop trying for a while."""

    failures: int = RESTART_FAILURES
    window: float = RESTART_WINDOW
    stable_after: float = STABLE_AFTER
    park_seconds: float = PARK_SECONDS
    backoff_first: float = BACKOFF_FIRST
    backoff_cap: float = BACKOFF_CAP
    jitter: float = BACKOFF_JITTER


@dataclass(frozen=True, slots=True)
class State:
    """Where a supervisor is.

    Attributes:
        status: see the module's diagram.
        reason: why the last run failed (for ``parked``: how often, and why);
            ``None`` once a run has come up, and when stopped.
        until: ``backing-off`` and ``parked``: when the next run starts (trio clock).
    """

    status: Status
    reason: str | None = None
    until: float | None = None


class Lifetime(Protocol):
    """One run: calls ``task_status.started()`` once up; raises when it fails."""

    def __call__(self, *, task_status: trio.TaskStatus[None]) -> Awaitable[None]: ...


class Restarts:
    """The failure bookkeeping (no I/O): what follows a failure, and when."""

    def __init__(self, policy: RestartPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.backoff = Backoff(
            first=policy.backoff_first,
            cap=policy.backoff_cap,
            jitter=policy.jitter,
            rng=rng or random.Random(),
        )
        self._failures: collections.deque[float] = collections.deque()

    @property
    def failures(self) -> int:
        """Failures counted within the window."""
        return len(self._failures)

    def came_up(self) -> None:
        """A run is up: the next failure is retried at once."""
        self.backoff.reset()

    def failed(self, reason: str, *, now: float, lasted: float) -> State:
        """Count a failure at ``now`` of a run that lasted ``lasted`` seconds.

        Returns:
            ``backing-off`` until the next run, or ``parked`` (its reason says
            how often the runs failed) when this failure completes a crash loop.
        """
        policy = self.policy
        if lasted >= policy.stable_after:
            self._failures.clear()
        self._failures.append(now)
        while self._failures and self._failures[0] < now - policy.window:
            self._failures.popleft()
        if len(self._failures) >= policy.failures:
            text = f"failed {len(self._failures)} times within {policy.window:g} s: {reason}"
            return State("parked", text, now + policy.park_seconds)
        return State("backing-off", reason, now + self.backoff.next_delay())

    def park_over(self) -> None:
        """The park ended: count failures afresh, and retry the next one at once."""
        self._failures.clear()
        self.backoff.reset()


@final
class Supervisor:
    """Runs a lifetime again and again: see the module's diagram.

    Args:
        name: how log lines name the supervised thing (``"MCP server time"``).
        policy: when to restart and when to park.
        logger: where the failures, parks and retries are logged.
        retrying: the word the log uses for a retry (``"reconnecting"``).
        describe: one line of text for the exception a failed run raised.
        on_change: called with every new state.
        while_parked: runs during each park (with the ``parked`` state) and is
            cancelled when the park ends; the supervisor waits out the park
            either way.
        rng: the backoff's random source (seed it for repeatable jitter).
    """

    def __init__(
        self,
        name: str,
        policy: RestartPolicy | None = None,
        *,
        logger: logging.Logger = log,
        retrying: str = "restarting",
        describe: Callable[[BaseException], str] = describe_error,
        on_change: Callable[[State], None] | None = None,
        while_parked: Callable[[State], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.policy = policy or RestartPolicy()
        self.state: Watched[State] = Watched(State("stopped"))
        self.restarts = Restarts(self.policy, rng)
        self._log = logger
        self._retrying = retrying
        self._describe = describe
        self._on_change = on_change
        self._while_parked = while_parked
        self._last_reason: str | None = None
        self._running = False

    async def run(self, lifetime: Lifetime) -> NoReturn:
        """Run ``lifetime`` again and again until cancelled, then report ``stopped``.

        Raises:
            RuntimeError: this supervisor is running already.
        """
        if self._running:
            raise RuntimeError(f"{self.name}: the supervisor is running already")
        self._running = True
        try:
            while True:
                await self._run_once(lifetime)
        finally:
            self._running = False
            self._publish(State("stopped"))

    async def _run_once(self, lifetime: Lifetime) -> None:
        self._publish(State("starting", self.state.value.reason))
        started = trio.current_time()
        try:
            await lifetime(task_status=_Started(self._came_up))
        except Exception as exc:
            now = trio.current_time()
            reason = self._describe(exc)
            state = self.restarts.failed(reason, now=now, lasted=now - started)
            self._log_failure(reason, state)
            self._last_reason = reason
            self._publish(state)
            await self._wait(state)

    def _came_up(self) -> None:
        self.restarts.came_up()
        self._last_reason = None
        self._publish(State("running"))

    def _log_failure(self, reason: str, state: State) -> None:
        if state.status == "parked":
            self._log.error(
                "%s: %s; parked for %g s", self.name, state.reason, self.policy.park_seconds
            )
        elif reason != self._last_reason:
            self._log.warning("%s: %s; %s", self.name, reason, self._retrying)
        else:  # the same problem again: once in the log is enough
            self._log.debug("%s: %s; %s", self.name, reason, self._retrying)

    async def _wait(self, state: State) -> None:
        assert state.until is not None
        if state.status != "parked":
            await trio.sleep_until(state.until)
            return
        with trio.move_on_at(state.until):
            if self._while_parked is not None:
                await self._while_parked(state)
            await trio.sleep_forever()
        self.restarts.park_over()
        self._log.info("%s: trying again after the park", self.name)

    def _publish(self, state: State) -> None:
        if state == self.state.value:
            return
        self.state.value = state
        if self._on_change is not None:
            self._on_change(state)


class _Started:
    """The ``task_status`` a lifetime gets: ``started()`` marks the run as up."""

    def __init__(self, came_up: Callable[[], None]) -> None:
        self._came_up: Callable[[], None] | None = came_up

    def started(self, value: object = None) -> None:
        if self._came_up is None:
            raise RuntimeError("called 'started' twice on the same task status")
        came_up, self._came_up = self._came_up, None
        came_up()
