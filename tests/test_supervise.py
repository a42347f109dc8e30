"""The restart supervisor alone, on trio's virtual clock: exact backoff, window, park and states."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from edge.supervise import RestartPolicy, Restarts, State, Supervisor

#: No jitter, so every delay is exact.
POLICY = RestartPolicy(
    failures=3, window=100.0, stable_after=5.0, park_seconds=50.0,
    backoff_first=1.0, backoff_cap=4.0, jitter=0.0,
)  # fmt: skip


@dataclass
class Run:
    """One scripted run: wait ``before``, maybe come up, wait ``after``, then fail (or return)."""

    before: float = 0.0
    up: bool = False
    after: float = 0.0
    returns: bool = False


@dataclass
class Script:
    """A lifetime that plays ``runs`` in turn (the last one again and again), noting start times."""

    runs: list[Run]
    starts: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)

    async def __call__(self, *, task_status: trio.TaskStatus[None]) -> None:
        number = len(self.starts)
        run = self.runs[min(number, len(self.runs) - 1)]
        self.starts.append(trio.current_time())
        try:
            await trio.sleep(run.before)
            if run.up:
                task_status.started()
            await trio.sleep(run.after)
        finally:
            self.finished.append(trio.current_time())
        if not run.returns:
            raise RuntimeError(f"run {number} failed")


def supervisor(
    policy: RestartPolicy = POLICY, **options: object
) -> tuple[Supervisor, list[tuple[float, State]]]:
    seen: list[tuple[float, State]] = []
    sup = Supervisor(
        "thing", policy, on_change=lambda s: seen.append((trio.current_time(), s)), **options
    )
    return sup, seen


async def until_state(sup: Supervisor, predicate: Callable[[State], bool]) -> State:
    with trio.fail_after(10_000):
        return await sup.state.wait_for(predicate)


# -- the bookkeeping, without trio ---------------------------------------------------------


def test_failures_back_off_then_park_and_start_afresh() -> None:
    restarts = Restarts(POLICY)
    assert restarts.failed("boom", now=0.0, lasted=0.0) == State("backing-off", "boom", 1.0)
    assert restarts.failed("boom", now=1.0, lasted=0.0) == State("backing-off", "boom", 3.0)
    assert restarts.failed("boom", now=3.0, lasted=0.0) == State(
        "parked", "failed 3 times within 100 s: boom", 53.0
    )
    restarts.park_over()
    assert restarts.failures == 0
    assert restarts.failed("boom", now=53.0, lasted=0.0) == State("backing-off", "boom", 53.0)


def test_old_failures_leave_the_window_and_a_stable_run_forgets_them() -> None:
    restarts = Restarts(RestartPolicy(failures=2, window=10.0, stable_after=5.0, jitter=0.0))
    restarts.failed("a", now=0.0, lasted=0.0)
    assert restarts.failed("b", now=11.0, lasted=0.0).status == "backing-off"
    assert restarts.failures == 1  # the one at 0 s is out of the window
    assert restarts.failed("c", now=20.0, lasted=6.0).status == "backing-off"
    assert restarts.failures == 1  # the stable run cleared the one at 11 s


# -- the loop, on the virtual clock -------------------------------------------------------


async def test_backoff_doubles_up_to_the_cap(autojump_clock: trio.testing.MockClock) -> None:
    sup, _ = supervisor(RestartPolicy(failures=100, backoff_first=1.0, backoff_cap=4.0, jitter=0.0))
    script = Script([Run()])
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run, script)
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    assert [t - t0 for t in script.starts] == [0, 1, 3, 7, 11, 15, 19]


async def test_a_run_that_came_up_is_retried_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup, _ = supervisor(RestartPolicy(failures=100, backoff_first=1.0, backoff_cap=4.0, jitter=0.0))
    script = Script([Run(), Run(), Run(up=True, after=1), Run(), Run()])
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run, script)
        await trio.sleep(8.5)
        nursery.cancel_scope.cancel()
    # 0 fails, wait 1; 1 fails, wait 2; 3 up, fails at 4, again at once; then 1, 2 again.
    assert [t - t0 for t in script.starts] == [0, 1, 3, 4, 5, 7]


async def test_failures_within_the_window_park_it_then_it_is_tried_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    parked: list[tuple[str, float]] = []

    async def while_parked(state: State) -> None:
        parked.append(("parked", trio.current_time()))
        try:
            await trio.sleep_forever()
        finally:
            parked.append(("over", trio.current_time()))

    sup, seen = supervisor(while_parked=while_parked)
    script = Script([Run()])
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run, script)
        state = await until_state(sup, lambda s: s.status == "parked")
        assert trio.current_time() - t0 == 3
        assert state.reason == "failed 3 times within 100 s: RuntimeError: run 2 failed"
        assert state.until is not None
        assert state.until - t0 == 53
        # Afresh after the park: the next failure is retried at once, the second after 1 s.
        await until_state(
            sup, lambda s: s.status == "parked" and s.until is not None and s.until > t0 + 53
        )
        nursery.cancel_scope.cancel()
    assert [t - t0 for t in script.starts] == [0, 1, 3, 53, 53, 54]
    assert [(what, t - t0) for what, t in parked] == [
        ("parked", 3),
        ("over", 53),
        ("parked", 54),
        ("over", 54),
    ]
    parked_reason = "failed 3 times within 100 s: RuntimeError: run 2 failed"
    assert [(t - t0, s) for t, s in seen][5:8] == [
        (3, State("parked", parked_reason, t0 + 53)),
        (53, State("starting", parked_reason)),  # still failing: no run has come up
        (53, State("backing-off", "RuntimeError: run 3 failed", t0 + 53)),
    ]


async def test_a_stable_run_resets_the_window(autojump_clock: trio.testing.MockClock) -> None:
    sup, _ = supervisor()
    # fail at 0; at 1 up for 6 s (stable), fail at 7; fail at 7 (retried at once), at 8: parked.
    script = Script([Run(), Run(up=True, after=6), Run(), Run()])
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run, script)
        await until_state(sup, lambda s: s.status == "parked")
        assert trio.current_time() - t0 == 8
        nursery.cancel_scope.cancel()
    assert [t - t0 for t in script.starts] == [0, 1, 7, 8]


async def test_a_short_run_does_not_reset_the_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup, _ = supervisor()
    script = Script([Run(), Run(up=True, after=4), Run()])
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run, script)
        await until_state(sup, lambda s: s.status == "parked")
        assert trio.current_time() - t0 == 5
        nursery.cancel_scope.cancel()
    assert [t - t0 for t in script.starts] == [0, 1, 5]


async def test_states_are_reported_with_their_reasons(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sup, seen = supervisor(logger=logging.getLogger("test.supervise"), retrying="reconnecting")
    script = Script([Run(before=1, up=True, after=2), Run(), Run(up=True, after=10**6)])
    t0 = trio.current_time()
    assert sup.state.value == State("stopped")
    with caplog.at_level(logging.DEBUG, logger="test.supervise"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run, script)
            await until_state(sup, lambda s: s.status == "running" and trio.current_time() - t0 > 1)
            assert trio.current_time() - t0 == 4
            nursery.cancel_scope.cancel()
    boom0, boom1 = "RuntimeError: run 0 failed", "RuntimeError: run 1 failed"
    assert [(t - t0, s) for t, s in seen] == [
        (0, State("starting")),
        (1, State("running")),
        (3, State("backing-off", boom0, t0 + 3)),  # it had come up: retried at once
        (3, State("starting", boom0)),
        (3, State("backing-off", boom1, t0 + 4)),
        (4, State("starting", boom1)),
        (4, State("running")),
        (4, State("stopped")),
    ]
    assert sup.state.value == State("stopped")
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "test.supervise"]
    assert logged == [
        ("WARNING", f"thing: {boom0}; reconnecting"),
        ("WARNING", f"thing: {boom1}; reconnecting"),
    ]


async def test_the_same_reason_again_is_logged_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    sup, _ = supervisor(
        RestartPolicy(failures=3, window=100, park_seconds=50, backoff_first=1, jitter=0.0),
        logger=logging.getLogger("test.supervise"),
        describe=lambda exc: "it broke",
    )
    t0 = trio.current_time()
    with caplog.at_level(logging.DEBUG, logger="test.supervise"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.run, Script([Run()]))
            await until_state(
                sup, lambda s: s.status == "starting" and trio.current_time() - t0 > 50
            )
            nursery.cancel_scope.cancel()
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "test.supervise"]
    assert logged[:4] == [
        ("WARNING", "thing: it broke; restarting"),
        ("DEBUG", "thing: it broke; restarting"),
        ("ERROR", "thing: failed 3 times within 100 s: it broke; parked for 50 s"),
        ("INFO", "thing: trying again after the park"),
    ]


async def test_a_run_that_returns_is_restarted_at_once_without_a_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sup, seen = supervisor()
    script = Script([Run(before=2, returns=True)])
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run, script)
        await trio.sleep(9)
        nursery.cancel_scope.cancel()
    assert [t - t0 for t in script.starts] == [0, 2, 4, 6, 8]
    assert {s.status for _, s in seen} == {"starting", "stopped"}


@pytest.mark.parametrize(
    ("runs", "at", "status"),
    [
        ([Run(up=True, after=10**6)], 5.0, "running"),
        ([Run(before=10**6)], 5.0, "starting"),
        ([Run()], 0.5, "backing-off"),
        ([Run()], 10.0, "parked"),
    ],
)
async def test_cancelling_stops_it_cleanly_in_any_state(
    autojump_clock: trio.testing.MockClock, runs: list[Run], at: float, status: str
) -> None:
    hooks: list[str] = []

    async def while_parked(state: State) -> None:
        try:
            await trio.sleep_forever()
        finally:
            hooks.append("cancelled")

    sup, seen = supervisor(while_parked=while_parked)
    script = Script(runs)
    t0 = trio.current_time()
    with trio.move_on_after(at) as scope:
        await sup.run(script)
    assert scope.cancelled_caught
    assert trio.current_time() - t0 == at
    assert seen[-2][1].status == status
    assert (seen[-1][0] - t0, seen[-1][1]) == (at, State("stopped"))
    assert len(script.finished) == len(script.starts)  # every run unwound
    assert hooks == (["cancelled"] if status == "parked" else [])


async def test_it_runs_once_at_a_time(autojump_clock: trio.testing.MockClock) -> None:
    sup, _ = supervisor()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.run, Script([Run(up=True, after=10**6)]))
        await until_state(sup, lambda s: s.status == "running")
        with pytest.raises(RuntimeError, match="running already"):
            await sup.run(Script([Run()]))
        nursery.cancel_scope.cancel()
    # Stopped, it can run again.
    with trio.move_on_after(1):
        await sup.run(Script([Run(up=True, after=10**6)]))
    assert sup.state.value == State("stopped")


async def test_started_twice_is_an_error(autojump_clock: trio.testing.MockClock) -> None:
    errors: list[str] = []

    async def twice(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            task_status.started()
        except RuntimeError as exc:
            errors.append(str(exc))
        await trio.sleep_forever()

    sup, _ = supervisor()
    with trio.move_on_after(1):
        await sup.run(twice)
    assert errors == ["called 'started' twice on the same task status"]
