"""edge.scheduler.timetable: slots of each kind, daylight saving, parsing, catch-up."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings, strategies as st

from edge.scheduler.timetable import (
    MAX_COUNTED,
    MAX_GRACE,
    MIN_GRACE,
    ONCE_GRACE,
    CatchUp,
    Timetable,
    catch_up,
    cron,
    default_grace,
    every,
    local_iso,
    once,
    parse_at,
    parse_duration,
)

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def at(zone: str, *fields: int) -> float:
    return datetime(*fields, tzinfo=ZoneInfo(zone)).timestamp()  # type: ignore[misc]


def utc(*fields: int) -> float:
    return datetime(*fields, tzinfo=UTC).timestamp()  # type: ignore[misc]


def slots(tt: Timetable, after: float, n: int) -> list[float]:
    out = []
    for _ in range(n):
        nxt = tt.next_slot(after)
        assert nxt is not None
        out.append(nxt)
        after = nxt
    return out


# -- the kinds ------------------------------------------------------------------------


def test_once_has_one_slot_strictly_after() -> None:
    tt = once(1000.0)
    assert tt.next_slot(999.5) == 1000.0
    assert tt.next_slot(1000.0) is None
    assert tt.next_slot(2000.0) is None


def test_interval_slots_are_anchored() -> None:
    tt = every(60, anchor=1000.0)
    assert tt.next_slot(0.0) == 1000.0  # slot 0 is the anchor
    assert tt.next_slot(1000.0) == 1060.0  # strictly after
    assert tt.next_slot(1059.999) == 1060.0
    assert tt.next_slot(1000.0 + 60 * 1000 + 5) == 1000.0 + 60 * 1001  # never drifts
    assert slots(tt, 1030.0, 3) == [1060.0, 1120.0, 1180.0]


def test_interval_under_a_second_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 s"):
        every(0.5, anchor=0.0)


def test_cron_in_utc() -> None:
    tt = cron("*/15 * * * *", "UTC")
    assert slots(tt, utc(2026, 1, 1, 0, 7), 3) == [
        utc(2026, 1, 1, 0, 15), utc(2026, 1, 1, 0, 30), utc(2026, 1, 1, 0, 45),
    ]  # fmt: skip
    assert tt.next_slot(utc(2026, 1, 1, 0, 15)) == utc(2026, 1, 1, 0, 30)


def test_a_fixed_time_job_runs_once_on_a_fall_back_night() -> None:
    # New York falls back at 02:00 EDT on 2026-11-01: 01:00-02:00 happens twice.
    tt = cron("30 1 * * *", NEW_YORK)
    got = slots(tt, utc(2026, 10, 31, 12), 3)
    assert got == [
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT (-04:00), the first of the two
        utc(2026, 11, 2, 6, 30),  # 01:30 EST the next night
        utc(2026, 11, 3, 6, 30),
    ]
    # Asked from inside the repeated hour's second pass: no slot back in time.
    assert tt.next_slot(utc(2026, 11, 1, 6, 40)) == utc(2026, 11, 2, 6, 30)
    # Berlin repeats 02:00-03:00 on 2026-10-25: 02:30 once, at 02:30 CEST.
    tt = cron("30 2 * * *", BERLIN)
    assert slots(tt, utc(2026, 10, 24, 12), 2) == [
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
    ]


def test_a_job_in_the_skipped_hour_runs_at_the_first_minute_after_it() -> None:
    # Berlin springs forward at 02:00 CET on 2026-03-29: 02:30 does not exist that
    # night, and cronsim runs the job at 03:00 CEST instead (Debian cron does too).
    tt = cron("30 2 * * *", BERLIN)
    assert slots(tt, utc(2026, 3, 28, 12), 2) == [
        at(BERLIN, 2026, 3, 29, 3, 0),
        at(BERLIN, 2026, 3, 30, 2, 30),
    ]
    assert at(BERLIN, 2026, 3, 29, 3, 0) == utc(2026, 3, 29, 1, 0)
    tt = cron("30 2 * * *", NEW_YORK)  # 2026-03-08 in New York
    assert tt.next_slot(utc(2026, 3, 7, 12)) == utc(2026, 3, 8, 7, 0)  # 03:00 EDT


def test_a_stepped_job_follows_real_time_across_the_repeated_hour() -> None:
    tt = cron("0,30 * * * *", BERLIN)
    got = slots(tt, utc(2026, 10, 24, 23, 50), 5)
    assert got == [utc(2026, 10, 25, 0, 0) + 1800 * i for i in range(5)]  # 02:00 CEST .. 03:00 CET


def test_describe() -> None:
    assert every(300, anchor=0).describe() == "every 5 min"
    assert every(7200, anchor=0).describe() == "every 2 h"
    assert every(90, anchor=0).describe() == "every 90 s"
    assert cron("30 1 * * *", BERLIN).describe() == "cron 30 1 * * * (Europe/Berlin)"
    assert cron("30  1 * * *").describe() == "cron 30 1 * * * (local)"
    assert once(utc(2026, 12, 2, 9, 0)).describe().startswith("once at ")


def test_json_round_trip_and_refusals() -> None:
    for tt in (once(1.5e9), every(60, anchor=1e9), cron("0 9 * * 1-5", BERLIN), cron("* * * * *")):
        assert Timetable.from_json(tt.to_json()) == tt
    assert every(60, anchor=5).to_json() == {"kind": "interval", "every": 60.0, "anchor": 5.0}
    for bad, message in [
        ({"kind": "weekly"}, "unknown timetable kind"),
        ({"kind": "once"}, "needs its time"),
        ({"kind": "once", "at": True}, "number of seconds"),
        ({"kind": "once", "at": 1.0, "cron": "* * * * *"}, "has no cron"),
        ({"kind": "cron", "cron": "* * * *"}, "five fields"),
        ({"kind": "cron", "cron": "99 * * * *"}, "bad cron expression"),
        ({"kind": "cron", "cron": "* * * * *", "tz": "Nowhere/Place"}, "unknown time zone"),
        ({"kind": "interval", "every": 60}, "needs every and anchor"),
        ({"kind": "once", "at": 1.0, "colour": "red"}, "unknown timetable fields"),
        ("once", "JSON object"),
    ]:
        with pytest.raises(ValueError, match=message):
            Timetable.from_json(bad)


# -- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("2h", 7200), ("1h30m", 5400), ("45", 45), ("1d", 86400),
     ("1.5h", 5400), (" 2M ", 120)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m", "-5s", "1h 30", "0", "0s", "five"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_parse_at() -> None:
    assert parse_at("2026-12-02T08:00Z") == utc(2026, 12, 2, 8)
    assert parse_at("2026-12-02T09:00+01:00") == utc(2026, 12, 2, 8)
    assert parse_at("2026-12-02T09:00", tz=BERLIN) == utc(2026, 12, 2, 8)
    assert parse_at("2026-12-02 09:00", tz=NEW_YORK) == utc(2026, 12, 2, 14)
    # HH:MM: the next such local time after now.
    now = at(BERLIN, 2026, 12, 2, 10, 0)
    assert parse_at("11:15", tz=BERLIN, now=now) == at(BERLIN, 2026, 12, 2, 11, 15)
    assert parse_at("09:00", tz=BERLIN, now=now) == at(BERLIN, 2026, 12, 3, 9, 0)
    assert parse_at("10:00", tz=BERLIN, now=now) == at(BERLIN, 2026, 12, 3, 10, 0)
    # The repeated hour means its first pass.
    assert parse_at("2026-11-01T01:30", tz=NEW_YORK) == utc(2026, 11, 1, 5, 30)


def test_parse_at_refuses_a_time_in_the_spring_forward_gap() -> None:
    with pytest.raises(
        ValueError, match=r"does not exist in Europe/Berlin.*02:00 straight to 03:00"
    ):
        parse_at("2026-03-29T02:30", tz=BERLIN)
    with pytest.raises(ValueError, match=r"does not exist in America/New_York"):
        parse_at("02:30", tz=NEW_YORK, now=at(NEW_YORK, 2026, 3, 7, 12, 0))
    for bad in ("tomorrow", "25:00", "2026-13-01T00:00", ""):
        with pytest.raises(ValueError, match="not a"):
            parse_at(bad)


# -- grace and catch-up ---------------------------------------------------------------


def test_default_grace() -> None:
    assert default_grace(once(1e9), 1e9) == ONCE_GRACE
    assert default_grace(every(600, anchor=0), 600) == 300
    assert default_grace(every(10, anchor=0), 10) == MIN_GRACE
    assert default_grace(every(86400, anchor=0), 0) == MAX_GRACE
    tt = cron("0 * * * *", "UTC")
    assert default_grace(tt, utc(2026, 1, 1, 5)) == 1800


def test_on_time_is_one_run() -> None:
    tt = every(60, anchor=0)
    assert catch_up(tt, last_slot=0.0, next_slot=60.0, now=60.0, policy="run-once", grace=30) == (
        CatchUp(60.0, 0, 120.0, None, 60.0)
    )
    # Not due yet: nothing, and the same next slot.
    assert catch_up(tt, last_slot=0.0, next_slot=60.0, now=59.9, policy="run-once", grace=30) == (
        CatchUp(None, 0, 60.0)
    )


def test_fifty_missed_slots_are_one_run_at_most() -> None:
    tt = every(60, anchor=0)
    now = 60.0 * 50 + 10  # slots 60 .. 3000 are due
    got = catch_up(tt, last_slot=0.0, next_slot=60.0, now=now, policy="run-once", grace=30)
    assert got == CatchUp(3000.0, 49, 3060.0, 2940.0, 3000.0)
    got = catch_up(tt, last_slot=0.0, next_slot=60.0, now=now + 25, policy="run-once", grace=30)
    assert got == CatchUp(None, 50, 3060.0, 3000.0, 3000.0)  # beyond the grace: missed
    got = catch_up(tt, last_slot=0.0, next_slot=60.0, now=now, policy="skip", grace=30)
    assert got == CatchUp(None, 50, 3060.0, 3000.0, 3000.0)
    tt = cron("* * * * *", "UTC")
    got = catch_up(tt, last_slot=0.0, next_slot=60.0, now=now, policy="run-once", grace=30)
    # more than MAX_COUNTED: counted up to there (and said to be more)
    assert got == CatchUp(3000.0, MAX_COUNTED, 3060.0, 2940.0, 3000.0, more=True)
    got = catch_up(tt, last_slot=0.0, next_slot=60.0, now=now + 25, policy="run-once", grace=30)
    assert got == CatchUp(None, MAX_COUNTED, 3060.0, 3000.0, 3000.0, more=True)
    got = catch_up(tt, last_slot=0.0, next_slot=60.0, now=60.0 * MAX_COUNTED + 10,
                   policy="run-once", grace=30)  # fmt: skip
    last = 60.0 * MAX_COUNTED
    assert got == CatchUp(last, MAX_COUNTED - 1, last + 60, last - 60, last)  # counted exactly


def test_a_slot_taken_care_of_is_never_due_again() -> None:
    tt = every(60, anchor=0)
    got = catch_up(tt, last_slot=120.0, next_slot=120.0, now=130.0, policy="run-once", grace=30)
    assert got == CatchUp(None, 0, 180.0)


def test_a_once_task_late_within_its_grace_runs_beyond_it_is_missed() -> None:
    tt = once(1000.0)
    late = catch_up(tt, last_slot=None, next_slot=1000.0, now=1000 + ONCE_GRACE - 1,
                    policy="run-once", grace=ONCE_GRACE)  # fmt: skip
    assert late == CatchUp(1000.0, 0, None, None, 1000.0)
    gone = catch_up(tt, last_slot=None, next_slot=1000.0, now=1000 + ONCE_GRACE + 1,
                    policy="run-once", grace=ONCE_GRACE)  # fmt: skip
    assert gone == CatchUp(None, 1, None, 1000.0, 1000.0)


def test_a_year_of_minutes_is_counted_up_to_the_cap_quickly() -> None:
    tt = cron("* * * * *", "UTC")
    start = utc(2026, 1, 1)
    now = start + 365 * 86400 + 10
    got = catch_up(tt, last_slot=None, next_slot=start, now=now, policy="run-once", grace=30)
    assert got.run_slot == now - 10
    assert got.missed == MAX_COUNTED
    assert got.more
    assert got.missed_slot == now - 70
    assert got.next_slot == now + 50


# -- properties -----------------------------------------------------------------------

FIELDS = [
    st.sampled_from(["*", "0", "30", "*/15", "5,35", "0-10/5", "59", "0-59", "10-20", "*/2"]),
    st.sampled_from(["*", "0", "1", "2", "3", "*/6", "1-3", "23"]),
    st.sampled_from(["*", "1", "15", "31", "L", "1,15"]),
    st.sampled_from(["*", "1", "3", "10", "2-4", "*/2"]),
    st.sampled_from(["*", "0", "1-5", "SUN", "6", "MON#1"]),
]
ZONES = st.sampled_from(["UTC", BERLIN, NEW_YORK, "Australia/Lord_Howe", "Asia/Kolkata", None])
INSTANTS = st.floats(min_value=utc(2020, 1, 1), max_value=utc(2035, 1, 1))


@settings(max_examples=200)
@given(st.tuples(*FIELDS), ZONES, INSTANTS)
def test_cron_slots_strictly_increase_after_the_instant(
    fields: tuple[str, ...], tz: str | None, after: float
) -> None:
    try:
        tt = cron(" ".join(fields), tz)
    except ValueError:  # e.g. day 31 of a month that has none
        return
    previous = after
    for _ in range(4):
        nxt = tt.next_slot(previous)
        if nxt is None:
            break
        assert nxt > previous
        previous = nxt


@settings(max_examples=200)
@given(st.floats(min_value=1, max_value=1e6), INSTANTS, INSTANTS)
def test_interval_slots_are_on_the_grid(period: float, anchor: float, after: float) -> None:
    tt = every(period, anchor=anchor)
    nxt = tt.next_slot(after)
    assert nxt is not None
    assert nxt > after
    assert nxt - period <= after or nxt == anchor


# -- bounds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: once(1e12),
        lambda: once(1e20),
        lambda: once(253402300799),  # 9999-12-31T23:59:59Z
        lambda: once(-1e12),
        lambda: every(60, anchor=1e20),
        lambda: every(11 * 366 * 86400, anchor=utc(2026, 1, 1)),
        lambda: every(1e300, anchor=utc(2026, 1, 1)),
        lambda: Timetable.from_json({"kind": "once", "at": 1e20}),
        lambda: once(parse_at("9999-12-31T23:59:59-05:00")),
        lambda: once(parse_at("9999-12-31T23:59", tz="Etc/GMT+12")),
        lambda: once(parse_at("0001-01-01T00:00", tz="Asia/Tokyo")),
    ],
)
def test_times_out_of_range_are_refused_with_a_message(make: Any) -> None:
    with pytest.raises(ValueError, match=r"years|1970"):
        make()


def test_a_time_within_range_is_taken() -> None:
    soon = time.time() + 50 * 366 * 86400
    assert once(soon).describe().startswith("once at 20")
    assert every(10 * 365 * 86400, anchor=soon).next_slot(soon) == soon + 10 * 365 * 86400


NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([1e12, 1e15, 1e20, 9.3e18, 253402300799, -62135596800, 0, 1]),
)


@settings(max_examples=200)
@given(NUMBERS, NUMBERS)
def test_any_number_makes_a_timetable_or_a_value_error_and_never_a_crash(
    a: float, b: float
) -> None:
    for make in (
        lambda: once(a),
        lambda: every(b, anchor=a),
        lambda: Timetable.from_json({"kind": "once", "at": a}),
        lambda: Timetable.from_json({"kind": "interval", "every": b, "anchor": a}),
    ):
        try:
            tt = make()
        except ValueError:
            continue
        assert tt.describe()
        assert Timetable.from_json(tt.to_json()) == tt
    assert local_iso(a)  # never raises, whatever the number


# -- the repeated hour ----------------------------------------------------------------


@pytest.mark.parametrize("expr", ["0-59 1 * * *", "*/2 1 * * *", "* 1 * * *", "0-59/2 1,2 * * *"])
@pytest.mark.parametrize("minute", [0, 5, 30, 58, 59])
def test_a_start_in_the_second_pass_of_the_repeated_hour_still_has_a_next_slot(
    expr: str, minute: int
) -> None:
    ny = ZoneInfo(NEW_YORK)
    after = datetime(2026, 11, 1, 1, minute, 30, tzinfo=ny, fold=1).timestamp()  # EST
    tt = cron(expr, NEW_YORK)
    nxt = tt.next_slot(after)
    assert nxt is not None
    assert after < nxt < after + 2 * 86400
    assert slots(tt, after, 5) == sorted(set(slots(tt, after, 5)))


def _changes(name: str) -> list[float]:
    """Instants at which zone ``name`` changes its offset, 2024 to 2030."""
    z = ZoneInfo(name)
    out = []
    t = utc(2024, 1, 1)
    offset = datetime.fromtimestamp(t, z).utcoffset()
    while t < utc(2031, 1, 1):
        t += 900
        now = datetime.fromtimestamp(t, z).utcoffset()
        if now != offset:
            out.append(t)
            offset = now
    return out


CHANGES = {name: _changes(name) for name in (BERLIN, NEW_YORK, "Australia/Lord_Howe")}


@st.composite
def zone_and_instant(draw: st.DrawFn) -> tuple[str | None, float]:
    """A zone and an instant: any, or within 90 min of one of the zone's changes."""
    tz = draw(ZONES)
    if tz in CHANGES and draw(st.booleans()):
        change = draw(st.sampled_from(CHANGES[tz]))
        return tz, change + draw(st.floats(min_value=-5400, max_value=5400))
    return tz, draw(INSTANTS)


@settings(max_examples=300)
@given(st.tuples(*FIELDS), zone_and_instant())
@example(("0-59", "1", "*", "*", "*"), (NEW_YORK, utc(2026, 11, 1, 6, 20)))
@example(("10-20", "1-3", "*", "*", "*"), (NEW_YORK, utc(2026, 11, 1, 6, 15)))
@example(("*/2", "2", "*", "*", "*"), (BERLIN, utc(2026, 10, 25, 1, 30)))
def test_a_satisfiable_cron_always_has_a_next_slot(
    fields: tuple[str, ...], where: tuple[str | None, float]
) -> None:
    tz, after = where
    try:
        tt = cron(" ".join(fields), tz)
    except ValueError:  # e.g. day 31 of a month that has none: never satisfiable
        return
    previous = after
    for _ in range(4):
        nxt = tt.next_slot(previous)
        assert nxt is not None, (tt.cron, tz, previous)
        assert nxt > previous
        previous = nxt


# -- counting missed slots ------------------------------------------------------------


def test_a_week_of_minutes_missed_is_counted_cheaply() -> None:
    tt = cron("* * * * *", BERLIN)
    now = utc(2026, 6, 1, 12, 0, 10)
    last = now - 7 * 86400
    started = time.perf_counter()
    for _ in range(100):  # a hundred such tasks at start-up
        first = tt.next_slot(last)
        assert first is not None
        got = catch_up(tt, last_slot=last, next_slot=first, now=now, policy="run-once",
                       grace=default_grace(tt, first))  # fmt: skip
    spent = time.perf_counter() - started
    assert got.run_slot == now - 10
    assert got.missed == MAX_COUNTED
    assert got.more
    assert got.missed_slot == now - 70
    assert got.next_slot == now + 50
    assert spent < 2.0  # a few ms each on an idle machine; generous for a loaded one
