"""Schedules as values, and the time arithmetic behind them.

Times are stored as UTC epoch seconds; wall-clock meaning comes from the job's IANA zone.
Durations ("in 2h", "every 30m") are elapsed time, so they are added in UTC and a DST change
does not stretch or shrink them. Cron expressions are read with standard crontab meaning and
evaluated by APScheduler's CronTrigger, imported on first use.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from bot.store.jobs import Job


@dataclass(frozen=True, slots=True)
class Once:
    at: datetime  # aware


@dataclass(frozen=True, slots=True)
class Every:
    interval: timedelta
    first: datetime | None = None  # None: one interval from now


@dataclass(frozen=True, slots=True)
class Cron:
    expr: str  # minute hour day-of-month month day-of-week; 0 and 7 are Sunday


When = Once | Every | Cron


@dataclass(frozen=True, slots=True)
class Plan:
    """A When checked and resolved into what the jobs table stores."""

    repeat: str  # once | interval | cron
    interval_s: float | None
    cron: str | None
    first_due: float


# durations ---------------------------------------------------------------------------------
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_UNIT = r"(?:weeks?|wks?|w|days?|d|hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)"
# a word amount needs a space after it, so "and" is not read as "an d(ay)"
_PART = rf"(?:\d+(?:\.\d+)?\s*|\b(?:an?|one)\s+){_UNIT}(?![a-z])"
#: one or more amounts with units: "20m", "1h30m", "1 hour and 30 minutes", "an hour"
DURATION = rf"{_PART}(?:\s*(?:,|and)?\s*{_PART})*"
_PART_RE = re.compile(
    rf"(?:(?P<n>\d+(?:\.\d+)?)\s*|\b(?P<word>an?|one)\s+)(?P<unit>{_UNIT})(?![a-z])",
    re.IGNORECASE,
)
_DURATION_RE = re.compile(rf"\s*{DURATION}\s*", re.IGNORECASE)


def parse_duration(text: str) -> timedelta:
    """ "20m", "1h30m", "2 hours", "an hour" -> timedelta; ValueError otherwise."""
    if not _DURATION_RE.fullmatch(text):
        raise ValueError(f"not a duration: {text!r} (try 20m, 1h30m, 2d)")
    total = 0.0
    for part in _PART_RE.finditer(text):
        number = 1.0 if part["word"] else float(part["n"])
        total += number * _UNIT_SECONDS[part["unit"][0].lower()]
    try:
        return timedelta(seconds=total)
    except OverflowError:
        raise ValueError(f"{text.strip()} is too long") from None


# the last moment a job may be due: its date can be written in any zone (year 9999 at most)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC).timestamp()


def later_by(now: datetime, delay: timedelta) -> datetime:
    """`now` plus elapsed time (added in UTC, so a DST change in between does not shift it),
    in now's zone; ValueError when that is past the last date a job may have."""
    try:
        at = now.astimezone(UTC) + delay
    except OverflowError:
        at = datetime.max.replace(tzinfo=UTC)
    if at.timestamp() > _LATEST:
        raise ValueError("that is too far ahead")
    return at.astimezone(now.tzinfo)


def human_duration(seconds: float) -> str:
    """3725 -> "1h 2m"; the two largest units, seconds only under an hour."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    days, rest = divmod(s, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs if s < 3600 else 0, "s")]
    shown = [f"{n}{u}" for n, u in parts if n][:2]
    return " ".join(shown)


# wall-clock times in a zone ----------------------------------------------------------------
class WallTimeProblem(ValueError):
    """A local time that does not exist (clocks jump forward) or exists twice (they go back)."""


def local_time(day: date, hour: int, minute: int, zone: tzinfo) -> datetime:
    naive = datetime.combine(day, time(hour, minute))
    first = naive.replace(tzinfo=zone, fold=0)
    if first.utcoffset() == naive.replace(tzinfo=zone, fold=1).utcoffset():
        return first
    when = f"{naive:%H:%M} on {format_day(first)}"
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive:
        raise WallTimeProblem(
            f"{when} happens twice in {zone} (the clocks go back an hour). Please pick a time "
            "outside that hour, or give a duration such as `in 3h`."
        )
    shifted = first.astimezone(UTC).astimezone(zone)
    raise WallTimeProblem(
        f"{when} does not exist in {zone} (the clocks jump forward an hour). "
        f"Did you mean {shifted:%H:%M}? Please say the time again."
    )


# English names, independent of the process locale
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_day(moment: datetime | date) -> str:
    """ "Tue 4 Mar 2025" """
    weekday, month = WEEKDAYS[moment.weekday()][:3], _MONTHS[moment.month - 1]
    return f"{weekday} {moment.day} {month} {moment.year}"


def format_local(ts: float, zone: str) -> str:
    """1741109400, "Europe/Berlin" -> "Tue 4 Mar 2025 18:30 CET"."""
    moment = datetime.fromtimestamp(ts, ZoneInfo(zone))
    return f"{format_day(moment)} {moment:%H:%M %Z}"


# cron ----------------------------------------------------------------------------------------
_CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day", 1, 31),
    ("month", 1, 12),
    ("day_of_week", 0, 7),
)
_MONTH_NAMES = {n.lower(): i + 1 for i, n in enumerate(_MONTHS)}
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering
_DAY_NUMBERS = {n: i for i, n in enumerate(DAY_NAMES)}


def _cron_field(text: str, lo: int, hi: int, names: dict[str, int]) -> frozenset[int]:
    def value(token: str) -> int:
        if token.isdigit():
            return int(token)
        if token in names:
            return names[token]
        raise ValueError(f"{token!r} is not a number or name")

    values: set[int] = set()
    for part in text.split(","):
        span, slash, step_text = part.partition("/")
        if slash and not (step_text.isdigit() and int(step_text) > 0):
            raise ValueError(f"bad step in {part!r}")
        step = int(step_text) if slash else 1
        if span == "*":
            first, last = lo, hi
        elif "-" in span:
            start, _, end = span.partition("-")
            first, last = value(start), value(end)
        else:
            first = value(span)
            last = hi if slash else first
        if not lo <= first <= last <= hi:
            raise ValueError(f"{part!r} is outside {lo}-{hi}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def cron_sets(expr: str) -> list[frozenset[int]]:
    """The five fields as sets of values (day of week 0-6, Sunday 0); ValueError if invalid."""
    fields = expr.lower().split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields, not {len(fields)}")
    sets = []
    for text, (name, lo, hi) in zip(fields, _CRON_FIELDS, strict=True):
        names = _MONTH_NAMES if name == "month" else _DAY_NUMBERS if name == "day_of_week" else {}
        try:
            sets.append(_cron_field(text, lo, hi, names))
        except ValueError as exc:
            raise ValueError(f"{name.replace('_', ' ')}: {exc}") from None
    sets[4] = frozenset(d % 7 for d in sets[4])
    # crontab fires when EITHER restricted day field matches; CronTrigger needs both to
    if len(sets[2]) < 31 and len(sets[4]) < 7:
        raise ValueError("restrict the day of the month or the day of the week, not both")
    return sets


def normalize_cron(expr: str) -> str:
    cron_sets(expr)
    return " ".join(expr.lower().split())


@functools.lru_cache(maxsize=512)
def _cron_trigger(expr: str) -> tuple[Any, bool]:
    from apscheduler.triggers.cron import CronTrigger

    minute, hour, day, month, weekday = cron_sets(expr)

    def spec(values: frozenset[int], size: int, names: tuple[str, ...] | None = None) -> str:
        if len(values) == size:
            return "*"
        return ",".join(names[v] if names else str(v) for v in sorted(values))

    # APScheduler 3 numbers weekdays from Monday = 0, so they are passed by name. It runs in
    # UTC on wall-clock times (see next_cron).
    trigger = CronTrigger(
        minute=spec(minute, 60),
        hour=spec(hour, 24),
        day=spec(day, 31),
        month=spec(month, 12),
        day_of_week=spec(weekday, 7, DAY_NAMES),
        timezone=UTC,
    )
    return trigger, len(hour) < 24


# more than any zone's DST shift: how far wall-clock and elapsed order can disagree
_DST_REACH = timedelta(hours=3)


def next_cron(expr: str, zone: str, after: float) -> float | None:
    """The first firing strictly after `after`, or None if there is none.

    The expression matches wall-clock times, found by CronTrigger in UTC (where wall-clock
    and elapsed time agree) and mapped into the zone here. APScheduler 3.11 cannot be given
    the zone itself: it adds wall-clock differences as elapsed time, and across a DST change
    skips runs (Berlin's "0 0 1 * *" from early March jumps to 1 May). Mapped here:
    a wall time the clocks skip runs when the clocks resume (02:30 -> 03:30); a wall time
    that happens twice runs at its first copy only, unless the hour field is "*" (an hourly
    job runs in both copies: an hour did pass).
    """
    trigger, fixed_hour = _cron_trigger(expr)
    tz = ZoneInfo(zone)
    wall = datetime.fromtimestamp(after, tz).replace(tzinfo=UTC)
    cursor = wall - _DST_REACH
    best: float | None = None
    best_wall = wall
    while (candidate := trigger.get_next_fire_time(None, cursor)) is not None:
        if best is not None and candidate - best_wall > _DST_REACH:
            break
        naive = candidate.replace(tzinfo=None)
        first = naive.replace(tzinfo=tz, fold=0).timestamp()
        second = naive.replace(tzinfo=tz, fold=1).timestamp()  # later only if repeated
        copies = (first,) if fixed_hour or second <= first else (first, second)
        for instant in copies:
            if instant > after and (best is None or instant < best):
                best, best_wall = instant, candidate
        cursor = candidate + timedelta(microseconds=1)
    return best


# plans and recurrences ---------------------------------------------------------------------
def plan(when: When, zone: str, now: float, min_interval: float) -> Plan:
    """Check a requested schedule; ValueError (with a message for the person) if it cannot be."""
    if isinstance(when, Once):
        at = when.at.timestamp()
        if at <= now:
            raise ValueError(f"{format_local(at, zone)} has already passed")
        if at > _LATEST:
            raise ValueError("that is too far ahead")
        return Plan("once", None, None, at)
    if isinstance(when, Every):
        every = when.interval.total_seconds()
        if every < min_interval:
            raise ValueError(f"the shortest repeat allowed is {human_duration(min_interval)}")
        first = now + every if when.first is None else when.first.timestamp()
        if first <= now:
            raise ValueError(f"{format_local(first, zone)} has already passed")
        if first > _LATEST:
            raise ValueError("that is too far ahead")
        return Plan("interval", every, None, first)
    expr = normalize_cron(when.expr)
    fires: list[float] = []
    cursor: float | None = now
    while cursor is not None and len(fires) < 12:
        cursor = next_cron(expr, zone, cursor)
        if cursor is not None:
            fires.append(cursor)
    if not fires:
        raise ValueError("that cron expression never fires")
    if any(b - a < min_interval for a, b in itertools.pairwise(fires)):
        raise ValueError(f"the shortest repeat allowed is {human_duration(min_interval)}")
    return Plan("cron", None, expr, fires[0])


def following(job: Job, moment: float) -> float | None:
    """The job's first occurrence strictly after `moment`; None for a one-shot."""
    if job.repeat == "interval" and job.interval_s:
        steps = max(math.floor((moment - job.due_at) / job.interval_s) + 1, 0)
        nxt = job.due_at + steps * job.interval_s
        return nxt if nxt > moment else nxt + job.interval_s  # float rounding on the grid
    if job.repeat == "cron" and job.cron:
        return next_cron(job.cron, job.timezone, moment)
    return None


def catch_up(job: Job, now: float, max_lateness: float) -> float | None:
    """The occurrence to deliver now: the latest one due at or before `now` (earlier ones
    are coalesced into it), or None when even that is more than `max_lateness` late."""
    oldest = now - max_lateness
    latest: float = job.due_at
    if job.repeat == "interval" and job.interval_s:
        latest = job.due_at + math.floor((now - job.due_at) / job.interval_s) * job.interval_s
    elif job.repeat == "cron" and job.cron:
        if job.due_at < oldest:  # skip what is too late anyway, without walking through it
            first_in_reach = next_cron(job.cron, job.timezone, oldest - 1e-6)
            if first_in_reach is None or first_in_reach > now:
                return None
            latest = first_in_reach
        while (following := next_cron(job.cron, job.timezone, latest)) is not None:
            if following > now:
                break
            latest = following
    return latest if latest >= oldest else None


def describe_repeat(job: Job) -> str:
    """How a repeating job repeats, in words; "" for a one-shot."""
    if job.repeat == "interval" and job.interval_s:
        return f"every {human_duration(job.interval_s)}"
    if job.repeat != "cron" or not job.cron:
        return ""
    minute, hour, dom, month, _ = job.cron.split()
    sets = cron_sets(job.cron)
    if not (minute.isdigit() and hour.isdigit() and dom == "*" and month == "*"):
        return f"cron {job.cron}"
    at = f"{int(hour):02d}:{int(minute):02d}"
    days = sets[4]
    if len(days) == 7:
        return f"every day at {at}"
    if days == frozenset(range(1, 6)):
        return f"every weekday at {at}"
    # Monday first, as people read a week
    names = [DAY_NAMES[d].capitalize() for d in sorted(days, key=lambda d: (d - 1) % 7)]
    return f"every {', '.join(names)} at {at}"
