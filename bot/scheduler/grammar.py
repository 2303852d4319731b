"""The `/remind` grammar: a small, deterministic language for when, then what.

    in 20m stretch                  at 18:30 call mom            tomorrow 9:00 dentist
    monday 8:15 gym                 2025-12-24 18:00 presents    every 2h drink water
    every weekday 9:00 standup      every mon,thu 19:00 choir    cron 0 9 * * 1-5 standup
    remind me in 2 minutes to stretch                            remind me to stretch in 20m

Anything that could be read two ways gets a question back instead of a guess: an hour
without minutes or am/pm ("at 9"), a morning time that has passed while its evening twin
has not ("at 6:30" at 17:00), today's weekday named ("monday 9:00" on a Monday), and wall
times that a DST change skips or repeats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from bot.scheduler.timing import (
    DURATION,
    WEEKDAYS,
    Cron,
    Every,
    Once,
    WallTimeProblem,
    When,
    format_day,
    later_by,
    local_time,
    normalize_cron,
    parse_duration,
)

EXAMPLES = (
    "`in 20m stretch`, `at 18:30 call mom`, `tomorrow 9:00 dentist`, "
    "`every weekday 9:00 standup`, `every 2h drink water`, `cron 0 9 * * 1-5 standup`"
)


@dataclass(frozen=True, slots=True)
class Reminder:
    when: When
    text: str
    #: how the time was resolved, when that is not obvious ("18:30 has passed today, ...")
    note: str = ""


@dataclass(frozen=True, slots=True)
class Clarify:
    question: str


Parsed = Reminder | Clarify


@dataclass(frozen=True, slots=True)
class _Match:
    end: int
    when: When | None = None
    question: str = ""
    note: str = ""


_FLAGS = re.IGNORECASE
_PREAMBLE = re.compile(r"\s*(?:/?remind\b\s*)?(?:me\b\s*)?", _FLAGS)
# a time ends at a space or punctuation, but "18" is not the time in "18:3" or "9.30"
_TIME = r"(?:noon|midnight|\d{1,2}(?::\d{2})?(?:\s*[ap]\.?m\.?)?)(?![\w.]|:\d)"
_TIME_PARTS = re.compile(r"(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>[ap])?", _FLAGS)
_DAY = (
    r"(?:mon(?:day)?|tue(?:s(?:day)?)?|wed(?:nesday)?|thu(?:r(?:s(?:day)?)?)?|fri(?:day)?"
    r"|sat(?:urday)?|sun(?:day)?)s?(?![a-z])"
)
_WORD_END = r"(?=[\s:;,]|$)"

_IN = re.compile(rf"in\s+(?P<d>{DURATION}){_WORD_END}", _FLAGS)
_AT = re.compile(rf"at\s+(?P<t>{_TIME})", _FLAGS)
_DAY_AT = re.compile(
    rf"(?:on\s+)?(?P<day>today|tomorrow|{_DAY}|\d{{4}}-\d{{2}}-\d{{2}})"
    rf"(?:(?:\s+at|\s*T|\s)\s*(?P<t>{_TIME}))?{_WORD_END}",
    _FLAGS,
)
_EVERY_DURATION = re.compile(rf"every\s+(?P<d>{DURATION}){_WORD_END}", _FLAGS)
_EVERY_DAYS = re.compile(
    rf"every\s+(?P<days>day|weekdays?|weekends?|{_DAY}(?:\s*(?:,|and)\s*{_DAY})*)"
    rf"(?:\s+(?:at\s+)?(?P<t>{_TIME}))?{_WORD_END}",
    _FLAGS,
)
_CRON = re.compile(r"cron\s+(?P<expr>(?:\S+\s+){4}\S+)" + _WORD_END, _FLAGS)
_FOLLOWING_AT = re.compile(rf"\s*at\s+{_TIME}", _FLAGS)
_TRAILING_START = re.compile(r"\s(?=(?:in|at|on|today|tomorrow|every|cron)\s)", _FLAGS)
_BODY_LEAD = re.compile(r"^(?:to\b|[:,\-])\s*", _FLAGS)


def parse_reminder(text: str, now: datetime) -> Parsed:
    """Read a request; `now` is an aware datetime in the person's zone."""
    s = _PREAMBLE.sub("", text, count=1).strip()
    if not s:
        return Clarify(f"When, and what should I remind you of? For example {EXAMPLES}.")
    lead = _when(s, 0, now)
    if lead is not None:
        if lead.when is None:
            return Clarify(lead.question)
        body = _BODY_LEAD.sub("", s[lead.end :].strip(), count=1).strip()
        if not body:
            return Clarify("What should I remind you of? Put it after the time: `in 20m stretch`.")
        return Reminder(lead.when, body, lead.note)
    # "to stretch in 20 minutes": the time may close the request instead
    if s.lower().startswith("to "):
        for split in _TRAILING_START.finditer(s):
            trail = _when(s, split.end(), now)
            if trail is None or s[trail.end :].strip():
                continue
            if trail.when is None:
                return Clarify(trail.question)
            return Reminder(trail.when, s[3 : split.start()].strip(), trail.note)
    return Clarify(f"I could not tell when. Start with the time, for example {EXAMPLES}.")


def _when(s: str, pos: int, now: datetime) -> _Match | None:
    if m := _IN.match(s, pos):
        try:
            delay = parse_duration(m["d"])
            if delay <= timedelta(0):
                return _Match(m.end(), question="That is now. How long from now?")
            return _Match(m.end(), Once(later_by(now, delay)))
        except ValueError as exc:
            return _Match(m.end(), question=_too_far(exc))
    if m := _AT.match(s, pos):
        return _at_time(m.end(), m["t"], now)
    if m := _EVERY_DURATION.match(s, pos):
        if _FOLLOWING_AT.match(s, m.end()):
            return _Match(
                m.end(),
                question=(
                    f"Should it repeat every {m['d']} from now, or at a time of day on given days "
                    "(`every day 9:00 ...`)? I cannot combine both."
                ),
            )
        try:
            return _Match(m.end(), Every(parse_duration(m["d"])))
        except ValueError as exc:
            return _Match(m.end(), question=_too_far(exc))
    if m := _EVERY_DAYS.match(s, pos):
        if m["t"] is None:
            example = f"every {m['days']} 9:00 ..."
            return _Match(m.end(), question=f"At what time? For example `{example}`.")
        return _every_days(m.end(), m["days"].lower(), m["t"])
    if m := _CRON.match(s, pos):
        try:
            return _Match(m.end(), Cron(normalize_cron(m["expr"])))
        except ValueError as exc:
            return _Match(m.end(), question=f"That cron expression does not work: {exc}.")
    if m := _DAY_AT.match(s, pos):
        return _on_day(m.end(), m["day"].lower(), m["t"], now)
    return None


def _too_far(exc: ValueError) -> str:
    reason = str(exc)
    return f"{reason[:1].upper()}{reason[1:]}. Please give a shorter time."


def _zone(now: datetime) -> tzinfo:
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime in the person's zone")
    return now.tzinfo


def _clock(text: str) -> tuple[int, int, bool] | str:
    """(hour, minute, could_be_pm) from "18:30", "9pm", "noon"; a question if it is unclear."""
    t = text.lower().replace(" ", "")
    if t in ("noon", "midnight"):
        return (12 if t == "noon" else 0), 0, False
    parts = _TIME_PARTS.match(t)
    assert parts is not None  # _TIME already matched
    hour, minute, ampm = int(parts["h"]), int(parts["m"] or 0), parts["ampm"]
    if minute > 59:
        return f"{text} is not a time of day."
    if ampm:
        if not 1 <= hour <= 12:
            return f"{text} is not a time of day."
        return hour % 12 + (12 if ampm == "p" else 0), minute, False
    if hour > 23:
        return f"{text} is not a time of day."
    if parts["m"] is None and 1 <= hour <= 12:
        return (
            f"{hour} in the morning or in the evening? Say {hour}am or {hour}pm, "
            f"or {hour:02d}:00 or {hour + 12 if hour < 12 else 0:02d}:00."
        )
    return hour, minute, 1 <= hour <= 11


def _at_time(end: int, text: str, now: datetime) -> _Match:
    clock = _clock(text)
    if isinstance(clock, str):
        return _Match(end, question=clock)
    hour, minute, could_be_pm = clock
    zone = _zone(now)
    today, tomorrow = now.date(), now.date() + timedelta(days=1)
    try:
        at = local_time(today, hour, minute, zone)
        if at > now:
            return _Match(end, Once(at))
        if could_be_pm:
            evening = local_time(today, hour + 12, minute, zone)
            if evening > now:
                morning, pm = f"{hour:02d}:{minute:02d}", f"{hour + 12}:{minute:02d}"
                return _Match(
                    end,
                    question=(
                        f"{morning} has passed today. Do you mean {pm} today, or {morning} "
                        f"tomorrow? Say `at {pm}` or `tomorrow {morning}`."
                    ),
                )
        at = local_time(tomorrow, hour, minute, zone)
    except WallTimeProblem as exc:
        return _Match(end, question=str(exc))
    return _Match(end, Once(at), note=f"{hour:02d}:{minute:02d} has passed today, so tomorrow")


def _on_day(end: int, day: str, time_text: str | None, now: datetime) -> _Match:
    today = now.date()
    if day == "today":
        target = today
    elif day == "tomorrow":
        target = today + timedelta(days=1)
    elif day[0].isdigit():
        try:
            target = date.fromisoformat(day)
        except ValueError:
            return _Match(end, question=f"{day} is not a date (use YYYY-MM-DD).")
    else:
        weekday = _weekday(day)
        if weekday is None:
            return _Match(end, question=f"Which day is {day!r}?")
        target = today + timedelta(days=(weekday - today.weekday()) % 7)
    if time_text is None:
        return _Match(end, question=f"At what time {day}? For example `{day} 9:00 ...`.")
    clock = _clock(time_text)
    if isinstance(clock, str):
        return _Match(end, question=clock)
    hour, minute, _ = clock
    zone = _zone(now)
    try:
        at = local_time(target, hour, minute, zone)
        if day[0].isalpha() and day not in ("today", "tomorrow") and target == today:
            if at > now:
                return _Match(
                    end,
                    question=(
                        f"Today is {format_day(now)}: today at {hour:02d}:{minute:02d}, or a week "
                        f"from today? Say `today {hour}:{minute:02d}` or give the date."
                    ),
                )
            at = local_time(target + timedelta(days=7), hour, minute, zone)
    except WallTimeProblem as exc:
        return _Match(end, question=str(exc))
    if at <= now:
        return _Match(end, question=f"{format_day(at)} {hour:02d}:{minute:02d} has already passed.")
    return _Match(end, Once(at))


def _every_days(end: int, days: str, time_text: str) -> _Match:
    clock = _clock(time_text)
    if isinstance(clock, str):
        return _Match(end, question=clock)
    hour, minute, _ = clock
    if days == "day":
        dow = "*"
    elif days.startswith("weekday"):
        dow = "1-5"
    elif days.startswith("weekend"):
        dow = "0,6"
    else:
        numbers = {_weekday(d) for d in re.split(r"\s*(?:,|and)\s*", days)}
        if None in numbers:
            return _Match(end, question=f"Which days are {days!r}? Use mon, tue, ... or day names.")
        # crontab numbers Sunday 0; datetime.weekday() numbers Monday 0
        dow = ",".join(str((n + 1) % 7) for n in sorted(n for n in numbers if n is not None))
    return _Match(end, Cron(f"{minute} {hour} * * {dow}"))


def _weekday(word: str) -> int | None:
    """ "mon", "Tues", "mondays" -> 0, 1, 0 (datetime's numbering, Monday 0)."""
    word = word.lower()
    for candidate in (word, word.removesuffix("s")):
        for number, name in enumerate(WEEKDAYS):
            if len(candidate) >= 3 and name.lower().startswith(candidate):
                return number
    return None
