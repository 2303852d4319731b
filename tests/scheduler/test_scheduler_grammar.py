"""The /remind grammar as a table: input -> schedule and text, or -> a clarifying question."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.scheduler.grammar import Clarify, Reminder, parse_reminder
from bot.scheduler.timing import Cron, Every, Once

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2025, 3, 3, 17, 0, tzinfo=BERLIN)  # a Monday


def at(day: int, hour: int, minute: int = 0, month: int = 3, year: int = 2025) -> Once:
    return Once(datetime(year, month, day, hour, minute, tzinfo=BERLIN))


SCHEDULES = [
    ("in 20m stretch", at(3, 17, 20), "stretch"),
    ("in 1h30m tea", at(3, 18, 30), "tea"),
    ("in an hour tea", at(3, 18), "tea"),
    ("in 1 hour and 15 minutes call back", at(3, 18, 15), "call back"),
    ("at 18:30 call mom", at(3, 18, 30), "call mom"),
    ("at 9pm tv", at(3, 21), "tv"),
    ("at 18 call mom", at(3, 18), "call mom"),
    ("tomorrow 9:00 dentist", at(4, 9), "dentist"),
    ("tomorrow at 7am run", at(4, 7), "run"),
    ("today 23:15 lights", at(3, 23, 15), "lights"),
    ("tuesday 9:00 gym", at(4, 9), "gym"),
    ("on friday at 8:15 bins", at(7, 8, 15), "bins"),
    ("monday 9:00 gym", at(10, 9), "gym"),  # today's 9:00 has passed: next Monday
    ("2025-12-24 18:00 presents", at(24, 18, month=12), "presents"),
    ("on 2025-12-24 at 18:00 presents", at(24, 18, month=12), "presents"),
    ("2025-12-24T18:00 presents", at(24, 18, month=12), "presents"),
    ("every weekday 9:00 standup", Cron("0 9 * * 1-5"), "standup"),
    ("every day at 7:30 run", Cron("30 7 * * *"), "run"),
    ("every mon, thu at 19:00 choir", Cron("0 19 * * 1,4"), "choir"),
    ("every monday and friday 8:00 gym", Cron("0 8 * * 1,5"), "gym"),
    ("every sunday 20:00 plan the week", Cron("0 20 * * 0"), "plan the week"),
    ("every weekend 10:00 brunch", Cron("0 10 * * 0,6"), "brunch"),
    ("every 2h drink water", Every(timedelta(hours=2)), "drink water"),
    ("every 30 minutes stand up", Every(timedelta(minutes=30)), "stand up"),
    ("cron 0 9 * * 1-5 standup", Cron("0 9 * * 1-5"), "standup"),
    ("cron */15 8-18 * * MON-FRI check mail", Cron("*/15 8-18 * * mon-fri"), "check mail"),
    ("remind me in 2 minutes to stretch", at(3, 17, 2), "stretch"),
    ("me in 2 minutes to stretch", at(3, 17, 2), "stretch"),
    ("remind me to stretch in 20 minutes", at(3, 17, 20), "stretch"),
    ("to call mom at 18:30", at(3, 18, 30), "call mom"),
    ("to check in at the hotel at 19:00", at(3, 19), "check in at the hotel"),
    ("in 10m: Take the Pizza out!", at(3, 17, 10), "Take the Pizza out!"),
]


@pytest.mark.parametrize(("request_text", "when", "text"), SCHEDULES)
def test_request_resolves_to_schedule(request_text: str, when: object, text: str) -> None:
    parsed = parse_reminder(request_text, NOW)
    assert isinstance(parsed, Reminder), parsed
    assert (parsed.when, parsed.text) == (when, text)


def test_a_time_passed_today_resolves_to_tomorrow_and_says_so() -> None:
    parsed = parse_reminder("at 16:30 call mom", NOW)
    assert parsed == Reminder(at(4, 16, 30), "call mom", "16:30 has passed today, so tomorrow")
    noon = parse_reminder("at noon lunch", NOW)
    assert isinstance(noon, Reminder) and noon.when == at(4, 12) and "tomorrow" in noon.note


QUESTIONS = [
    ("at 9 call", "9 in the morning or in the evening"),
    ("at 12 lunch", "12am or 12pm"),
    ("every day 9 stretch", "in the morning or in the evening"),
    ("to call mom at 9", "in the morning or in the evening"),
    ("at 6:30 dinner", "Do you mean 18:30 today, or 06:30 tomorrow"),
    ("monday 18:00 gym", "Today is Mon 3 Mar 2025"),
    ("tomorrow call mom", "At what time tomorrow"),
    ("every weekday standup", "At what time"),
    ("every 2 days at 9:00 water plants", "cannot combine"),
    ("2025-01-01 10:00 old news", "has already passed"),
    ("at 25:00 late", "not a time of day"),
    ("at 9:75 odd", "not a time of day"),
    ("cron 0 9 1 * 1 both", "not both"),
    ("cron 0 25 * * * late", "outside 0-23"),
    ("cron 0 9 * * 1-5", "What should I remind you of"),
    ("in 20m", "What should I remind you of"),
    ("in 0m now", "That is now"),
    ("stretch", "I could not tell when"),
    ("remind me", "When, and what"),
    ("", "When, and what"),
]


@pytest.mark.parametrize(("request_text", "fragment"), QUESTIONS)
def test_ambiguous_or_incomplete_request_gets_a_question(request_text: str, fragment: str) -> None:
    parsed = parse_reminder(request_text, NOW)
    assert isinstance(parsed, Clarify), parsed
    assert fragment in parsed.question


def test_durations_are_elapsed_time_across_spring_forward() -> None:
    before_change = datetime(2025, 3, 30, 1, 30, tzinfo=BERLIN)  # clocks jump 02:00 -> 03:00
    parsed = parse_reminder("in 2h check", before_change)
    assert isinstance(parsed, Reminder) and isinstance(parsed.when, Once)
    assert parsed.when.at.timestamp() - before_change.timestamp() == 7200
    assert parsed.when.at.astimezone(BERLIN).hour == 4  # 01:30 CET + 2h = 04:30 CEST


def test_wall_clock_times_across_dst_keep_the_wall_time() -> None:
    saturday = datetime(2025, 3, 29, 12, 0, tzinfo=BERLIN)
    parsed = parse_reminder("tomorrow 9:00 brunch", saturday)
    assert isinstance(parsed, Reminder) and isinstance(parsed.when, Once)
    assert parsed.when.at.astimezone(UTC).hour == 7  # 09:00 CEST, no longer UTC+1


@pytest.mark.parametrize(
    ("request_text", "fragment"),
    [
        ("2025-03-30 02:30 x", "does not exist in Europe/Berlin"),  # spring forward
        ("2025-10-26 02:30 x", "happens twice in Europe/Berlin"),  # fall back
    ],
)
def test_wall_times_a_dst_change_skips_or_repeats_get_a_question(
    request_text: str, fragment: str
) -> None:
    parsed = parse_reminder(request_text, NOW)
    assert isinstance(parsed, Clarify) and fragment in parsed.question
    if "does not exist" in fragment:
        assert "Did you mean 03:30" in parsed.question


def test_at_on_the_night_of_the_change() -> None:
    evening = datetime(2025, 3, 29, 22, 0, tzinfo=BERLIN)
    parsed = parse_reminder("at 2:30 feed the baby", evening)
    assert isinstance(parsed, Clarify) and "does not exist" in parsed.question
