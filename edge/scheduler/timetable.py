"""Timetables: when a scheduled task's slots are, as plain code (no I/O, no trio).

A slot is an instant, in seconds since the epoch, at which a task is due. Three
kinds of timetable:

* ``once``: one slot, ``at``.
* ``interval``: ``anchor + k * every`` for k = 0, 1, 2, ...; anchored, so a late
  run never shifts the slots after it.
* ``cron``: five cron fields meant in a time zone (``tz``, an IANA name; ``None``
  is the machine's zone at the time of asking). The arithmetic is ``cronsim``'s,
  which behaves like Debian's cron across daylight-saving changes for jobs at a
  fixed hour and minute: on a fall-back night a job in the repeated hour runs
  once, at the first occurrence (``30 1 * * *`` in America/New_York runs at
  01:30 EDT, not again at 01:30 EST); on a spring-forward night a job in the
  skipped hour runs at the first minute after the gap (``30 2 * * *`` in
  Europe/Berlin runs at 03:00 CEST). A job with ``*`` or a step in its minute or
  hour field (``*/15 * * * *``) follows real time: every quarter hour of the
  repeated hour is a slot, and the skipped hour has none.

A once time and an interval's anchor lie between 1970 and 100 years from now,
and an interval is at most 10 years: anything else is refused (``ValueError``),
so that every slot is a date-time ``describe`` and ``local_iso`` can write.

``catch_up`` is the one decision the scheduler takes when it wakes: which due
slot to run (at most one), how many were missed, and the next slot.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Final, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

Kind = Literal["once", "interval", "cron"]
MissedPolicy = Literal["run-once", "skip"]

KINDS: Final[tuple[str, ...]] = get_args(Kind)
MISSED_POLICIES: Final[tuple[str, ...]] = get_args(MissedPolicy)

#: The shortest interval (seconds).
MIN_EVERY: Final = 1.0
#: Grace of a once task: it still runs when edge comes back within this many seconds.
ONCE_GRACE: Final = 3600.0
#: The default grace of a repeating task is half its period, clamped to this range (seconds).
MIN_GRACE: Final = 60.0
MAX_GRACE: Final = 7200.0
#: A slot run this late (seconds) is on time, missed-run policy or not.
ON_TIME: Final = 2.0
#: Missed slots of a cron task counted one by one at most: past this many, the count
#: says "more than" it (counting a week of minutes one by one would hold up the loop).
MAX_COUNTED: Final = 10
#: The latest instant a once time or an interval's anchor may be: this many seconds
#: from now (100 years). The earliest is the epoch (1970).
MAX_AHEAD: Final = 100 * 365.25 * 86400
#: The longest interval (seconds: 10 years).
MAX_EVERY: Final = 10 * 365.25 * 86400
#: A cron walk started in the second pass of a repeated (fall-back) hour is started
#: again this long before it (seconds), and skips at most ``MAX_SKIPPED`` slots that
#: are not after where it was.
RESTART_BACK: Final = 3 * 3600.0
MAX_SKIPPED: Final = 4 * 60 + 10


def local_zone() -> tzinfo:
    """The machine's time zone, with its daylight-saving rules where they can be found.

    ``TZ`` first, then ``/etc/localtime`` (its IANA name when it is a link into a
    zoneinfo tree, else the file itself), then the fixed offset ``time`` reports.
    """
    name = os.environ.get("TZ", "").removeprefix(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    localtime = Path("/etc/localtime")
    try:
        target = os.readlink(localtime)
        if "zoneinfo/" in target:
            return ZoneInfo(target.rsplit("zoneinfo/", 1)[1])
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    try:
        with localtime.open("rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        pass
    return timezone(timedelta(seconds=-time.timezone))


def zone(name: str | None) -> tzinfo:
    """The zone ``name`` (IANA), or the local zone for ``None``.

    Raises:
        ValueError: no such zone.
    """
    if name is None:
        return local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name, e.g. Europe/Berlin)") from None


def local_iso(at: float, tz: tzinfo | None = None) -> str:
    """``at`` as an ISO 8601 local time with its offset, to the second.

    Never raises: an instant no date-time can hold is given as its number.
    """
    try:
        return datetime.fromtimestamp(at, tz or local_zone()).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError, TypeError):
        return f"{at!r} (epoch seconds)"


def _instant_error(what: str, value: float) -> str | None:
    """Why ``value`` cannot be the instant ``what`` (out of range), else ``None``."""
    if value < 0:
        return f"{what} is before 1970"
    if value > time.time() + MAX_AHEAD:
        return f"{what} is more than 100 years ahead"
    return None


def _offset(dt: datetime) -> str:
    delta = dt.utcoffset() or timedelta(0)
    sign = "-" if delta < timedelta(0) else "+"
    minutes = abs(int(delta.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _duration_text(seconds: float) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


@dataclass(frozen=True, slots=True)
class Timetable:
    """When a task is due: one of the three kinds (see the module's docstring).

    Raises:
        ValueError: the fields do not make a valid timetable of the kind.
    """

    kind: Kind
    at: float | None = None  # once: epoch seconds
    every: float | None = None  # interval: seconds (>= 1)
    anchor: float | None = None  # interval: epoch seconds of slot 0
    cron: str | None = None  # cron: five fields
    tz: str | None = None  # cron: IANA zone name; None = local zone

    def __post_init__(self) -> None:
        if self.kind == "once":
            if not _finite(self.at):
                raise ValueError("a once timetable needs its time (at)")
            assert self.at is not None
            if (why := _instant_error("the time", self.at)) is not None:
                raise ValueError(why)
            self._only("at")
        elif self.kind == "interval":
            if not _finite(self.every) or not _finite(self.anchor):
                raise ValueError("an interval timetable needs every and anchor")
            assert self.every is not None
            if self.every < MIN_EVERY:
                raise ValueError(f"an interval must be at least {MIN_EVERY:g} s")
            if self.every > MAX_EVERY:
                raise ValueError("an interval is at most 10 years")
            assert self.anchor is not None
            if (why := _instant_error("the interval's start", self.anchor)) is not None:
                raise ValueError(why)
            self._only("every", "anchor")
        elif self.kind == "cron":
            if not isinstance(self.cron, str) or not self.cron.strip():
                raise ValueError("a cron timetable needs its five fields")
            fields = self.cron.split()
            if len(fields) != 5:
                raise ValueError(
                    f"a cron expression has five fields (minute hour day month weekday), "
                    f"not {len(fields)}: {self.cron!r}"
                )
            if self.tz is not None and not isinstance(self.tz, str):
                raise ValueError("tz must be an IANA zone name")
            try:
                CronSim(self.cron, datetime.now(zone(self.tz)))
            except CronSimError as exc:
                raise ValueError(f"bad cron expression {self.cron!r}: {exc}") from None
            self._only("cron", "tz")
        else:
            raise ValueError(f"unknown timetable kind {self.kind!r} (once, interval or cron)")

    def _only(self, *names: str) -> None:
        for name in ("at", "every", "anchor", "cron", "tz"):
            if name not in names and getattr(self, name) is not None:
                raise ValueError(f"a {self.kind} timetable has no {name}")

    def next_slot(self, after: float) -> float | None:
        """The first slot strictly after ``after``; ``None`` when there is none."""
        if self.kind == "once":
            assert self.at is not None
            return self.at if self.at > after else None
        if self.kind == "interval":
            assert self.every is not None
            assert self.anchor is not None
            if after < self.anchor:
                return self.anchor
            k = math.floor((after - self.anchor) / self.every)
            slot = self.anchor + k * self.every
            while slot <= after:
                k += 1
                slot = self.anchor + k * self.every
            return slot
        return self._next_cron(after)

    def _next_cron(self, after: float) -> float | None:
        return next(self.cron_slots(after), None)

    def cron_slots(self, after: float) -> Iterator[float]:
        """A cron timetable's slots after ``after``, in order (one cronsim walk)."""
        assert self.cron is not None
        tz = zone(self.tz)
        it = CronSim(self.cron, datetime.fromtimestamp(after, tz))
        last = after
        skipped = 0
        restarted = False
        # cronsim walks local wall time, and a walk started in the second pass of a
        # repeated hour yields first-pass instants (before ``after``) for the rest of
        # that hour. Such a walk is started again before the hour, where cronsim
        # walks it in order, and what it gives up to where it was is skipped: the
        # slots are the same whatever the start, and only ever increase.
        while True:
            try:
                slot = next(it).timestamp()
            except StopIteration:  # no match within cronsim's 50-year horizon
                return
            if slot > last:
                skipped, restarted = 0, False
                last = slot
                yield slot
                continue
            if not restarted:
                restarted = True
                it = CronSim(self.cron, datetime.fromtimestamp(last - RESTART_BACK, tz))
                continue
            skipped += 1
            if skipped > MAX_SKIPPED:  # not one slot ahead in hours of them: give up
                return

    def describe(self) -> str:
        """One line for people: ``every 5 min``, ``cron 30 1 * * * (Europe/Berlin)``, ...

        Never raises.
        """
        if self.kind == "once":
            assert self.at is not None
            try:
                dt = datetime.fromtimestamp(self.at, local_zone())
            except (OverflowError, OSError, ValueError):
                return f"once at {self.at!r} (epoch seconds)"
            clock = dt.strftime("%Y-%m-%d %H:%M" if dt.second == 0 else "%Y-%m-%d %H:%M:%S")
            return f"once at {clock} {_offset(dt)}"
        if self.kind == "interval":
            assert self.every is not None
            return f"every {_duration_text(self.every)}"
        return f"cron {self.cron} ({self.tz or 'local'})"

    def to_json(self) -> dict[str, Any]:
        """The fields that are set, and the kind."""
        out: dict[str, Any] = {"kind": self.kind}
        for name in ("at", "every", "anchor", "cron", "tz"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, d: Any) -> Timetable:
        """The timetable ``to_json`` made (or a client sent).

        Raises:
            ValueError: not a valid timetable.
        """
        if not isinstance(d, dict):
            raise ValueError("a timetable is a JSON object")
        unknown = set(d) - {"kind", "at", "every", "anchor", "cron", "tz"}
        if unknown:
            raise ValueError(f"unknown timetable fields: {', '.join(sorted(unknown))}")
        kind = d.get("kind")
        if kind not in KINDS:
            raise ValueError(f"unknown timetable kind {kind!r} (once, interval or cron)")
        numbers: dict[str, float | None] = {}
        for name in ("at", "every", "anchor"):
            value = d.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise ValueError(f"timetable {name} must be a number of seconds")
            numbers[name] = None if value is None else float(value)
        for name in ("cron", "tz"):
            if d.get(name) is not None and not isinstance(d[name], str):
                raise ValueError(f"timetable {name} must be a string")
        return cls(kind, cron=d.get("cron"), tz=d.get("tz"), **numbers)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def every(seconds: float, *, anchor: float) -> Timetable:
    """Every ``seconds``, slot 0 at ``anchor``.

    Raises:
        ValueError: ``seconds`` is under 1.
    """
    return Timetable("interval", every=float(seconds), anchor=float(anchor))


def once(at: float) -> Timetable:
    """Once, at the instant ``at``."""
    return Timetable("once", at=float(at))


def cron(expr: str, tz: str | None = None) -> Timetable:
    """The cron expression ``expr`` (five fields) in zone ``tz`` (``None``: local).

    Raises:
        ValueError: a bad expression or an unknown zone, said for the user.
    """
    return Timetable("cron", cron=" ".join(expr.split()), tz=tz)


_UNITS: Final = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_duration(text: str) -> float:
    """Seconds from ``90s``, ``5m``, ``2h``, ``1h30m``, ``1d`` or a bare number of seconds.

    Raises:
        ValueError: not such a duration, or not positive.
    """
    compact = text.strip().lower().replace(" ", "")
    hint = "e.g. 90s, 5m, 2h, 1h30m, or a number of seconds"
    seconds: float
    if re.fullmatch(r"\d+(?:\.\d+)?", compact):
        seconds = float(compact)
    elif compact and re.fullmatch(rf"(?:{_DURATION_PART.pattern})+", compact):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(compact))
    else:
        raise ValueError(f"not a duration: {text!r} ({hint})")
    if not seconds > 0 or not math.isfinite(seconds):
        raise ValueError(f"a duration must be more than 0 seconds: {text!r}")
    return seconds


def parse_at(text: str, *, tz: str | None = None, now: float | None = None) -> float:
    """The instant a user means by ``text``, in epoch seconds.

    * An ISO 8601 date-time with an offset or ``Z``: that instant.
    * One without: that local time, in ``tz`` (``None``: the machine's zone).
    * ``HH:MM`` or ``HH:MM:SS``: the next such local time after ``now``.

    A local time that a fall-back night has twice means the first of them.

    Raises:
        ValueError: not a date-time, or a local time that does not exist (in a
            spring-forward gap; the message names the gap).
    """
    where = zone(tz)
    stripped = text.strip()
    clock = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", stripped)
    if clock:
        hour, minute, second = (int(g) if g else 0 for g in clock.groups())
        if hour > 23 or minute > 59 or second > 59:
            raise ValueError(f"not a time of day: {text!r}")
        base = datetime.fromtimestamp(time.time() if now is None else now, where)
        day = base.date()
        for _ in range(3):
            naive = datetime(day.year, day.month, day.day, hour, minute, second)
            instant = _localize(naive, where, text)
            if instant > base.timestamp():
                return instant
            day += timedelta(days=1)
        raise AssertionError("unreachable: a time of day recurs within two days")
    try:
        dt = datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(
            f"not a date-time: {text!r} (e.g. 2026-12-02T09:00, 2026-12-02T09:00+01:00, "
            "2026-12-02T08:00Z, or 09:00)"
        ) from None
    if dt.tzinfo is not None:
        try:
            return dt.timestamp()
        except (OverflowError, OSError, ValueError):
            raise _out_of_range(text) from None
    return _localize(dt, where, text)


def _out_of_range(text: str) -> ValueError:
    return ValueError(f"{text!r} is out of range (a time from 1970 to 100 years ahead)")


def _localize(naive: datetime, where: tzinfo, text: str) -> float:
    """The instant of local time ``naive`` in ``where`` (first of two; a gap refused)."""
    first = naive.replace(tzinfo=where, fold=0)
    try:
        instant = first.timestamp()
        back = datetime.fromtimestamp(instant, where).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        raise _out_of_range(text) from None
    if back == naive:
        return instant
    start, end = _gap(naive, where)
    name = getattr(where, "key", None) or str(where)
    raise ValueError(
        f"{naive:%Y-%m-%d %H:%M} does not exist in {name} ({text!r}): that night the clocks "
        f"go from {start:%H:%M} straight to {end:%H:%M}"
    )


def _gap(naive: datetime, where: tzinfo) -> tuple[datetime, datetime]:
    """The local times a spring-forward gap around ``naive`` runs from and to."""
    # fold=0 reads ``naive`` with the offset before the change, fold=1 with the one
    # after; the change itself lies between those two instants.
    lo = int(naive.replace(tzinfo=where, fold=1).timestamp())
    hi = int(naive.replace(tzinfo=where, fold=0).timestamp())
    before = datetime.fromtimestamp(lo, where).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, where).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    change = datetime.fromtimestamp(hi, UTC)
    old = before or timedelta(0)
    new = datetime.fromtimestamp(hi, where).utcoffset() or timedelta(0)
    return (change + old).replace(tzinfo=None), (change + new).replace(tzinfo=None)


def default_grace(tt: Timetable, slot: float) -> float:
    """How late a slot may still run: half the period, within 1 min - 2 h; 1 h for once."""
    if tt.kind == "once":
        return ONCE_GRACE
    if tt.kind == "interval":
        assert tt.every is not None
        period = tt.every
    else:
        following = tt.next_slot(slot)
        period = (following - slot) if following is not None else 2 * MAX_GRACE
    return min(max(period / 2, MIN_GRACE), MAX_GRACE)


@dataclass(frozen=True)
class CatchUp:
    """What to do about the slots due by now.

    Attributes:
        run_slot: the slot to run now (the latest due one), or ``None``.
        missed: due slots not run (counted up to ``MAX_COUNTED``).
        next_slot: the first slot after now, or ``None`` when there is none.
        missed_slot: the latest of the missed slots, or ``None``.
        latest: the latest due slot (run or missed): the task's new ``last_slot``.
        more: there were more than ``missed`` (a cron task's count stops at
            ``MAX_COUNTED``).
    """

    run_slot: float | None
    missed: int
    next_slot: float | None
    missed_slot: float | None = None
    latest: float | None = None
    more: bool = False


def catch_up(
    tt: Timetable,
    *,
    last_slot: float | None,
    next_slot: float | None,
    now: float,
    policy: MissedPolicy,
    grace: float,
) -> CatchUp:
    """Decide about the slots due by ``now``: at most one run, never a burst.

    The due slots are those from ``next_slot`` to ``now`` (both included) that come
    after ``last_slot`` (the last slot already taken care of: never twice). With
    ``"run-once"``, the latest due slot runs if it is less than ``grace`` seconds
    old, and the others count as missed; with ``"skip"``, only if it is less than
    ``ON_TIME`` old (it is on time: the wake's own delay). Otherwise all of them
    count as missed. On time, that is one due slot and it runs. A cron task's due
    slots are counted up to ``MAX_COUNTED`` (then ``more``), and its latest one is
    looked for in a short window before ``now``, widened up to its grace: a few
    dozen cronsim steps, however long edge was away.
    """
    first = next_slot
    if first is not None and last_slot is not None and first <= last_slot:
        first = tt.next_slot(last_slot)
    if first is None or first > now:
        return CatchUp(None, 0, first)
    following = tt.next_slot(now)
    latest, previous, count, more = first, None, 1, False
    if tt.kind == "interval":
        assert tt.every is not None
        assert tt.anchor is not None
        assert following is not None
        k_first = round((first - tt.anchor) / tt.every)
        k_next = round((following - tt.anchor) / tt.every)
        if k_next - k_first >= 2:
            count = k_next - k_first
            latest = tt.anchor + (k_next - 1) * tt.every
            previous = tt.anchor + (k_next - 2) * tt.every
    elif tt.kind == "cron":
        # From first up to now, one by one, up to MAX_COUNTED of them.
        slots = tt.cron_slots(first)
        s = next(slots, None)
        while s is not None and s <= now and count < MAX_COUNTED:
            latest, previous, count = s, latest, count + 1
            s = next(slots, None)
        if s is not None and s <= now:
            more = True
            gap = (latest - first) / (count - 1)
            found = _latest_cron(tt, after=latest, now=now, grace=grace, gap=gap)
            if found is not None:
                latest, previous = found[0], found[1] if found[1] is not None else latest
    if now - latest < (grace if policy == "run-once" else min(grace, ON_TIME)):
        return CatchUp(latest, count - 1 if not more else count, following, previous, latest, more)
    return CatchUp(None, count, following, latest, latest, more)


def _latest_cron(
    tt: Timetable, *, after: float, now: float, grace: float, gap: float
) -> tuple[float, float | None] | None:
    """The latest slot of ``tt`` after ``after`` and at most ``now``, and the one before
    it (if found), looked for within two ``gap`` (the mean gap between slots), then
    within ``grace`` (plus a little) before ``now``; ``None`` when there is none that
    recent."""
    widest = grace + 2 * ON_TIME + 60
    for window in sorted({min(2 * gap + 60, widest), widest}):
        latest: float | None = None
        previous: float | None = None
        for steps, s in enumerate(tt.cron_slots(max(after, now - window))):
            if s > now or steps > 2 * MAX_COUNTED:
                break
            latest, previous = s, latest
        if latest is not None:
            return latest, previous
    return None
