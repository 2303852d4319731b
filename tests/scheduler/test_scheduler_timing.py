"""Cron next runs (standard crontab meaning, through APScheduler), intervals, DST, catch-up."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.messages import Conversation
from bot.scheduler.timing import (
    Cron,
    Every,
    Once,
    catch_up,
    cron_sets,
    describe_repeat,
    following,
    human_duration,
    next_cron,
    parse_duration,
    plan,
)
from bot.store.jobs import Job, JobKind, JobStatus

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN).timestamp()


def fires(expr: str, start: float, count: int, zone: str = "Europe/Berlin") -> list[str]:
    out, cursor = [], start
    for _ in range(count):
        nxt = next_cron(expr, zone, cursor)
        assert nxt is not None
        out.append(datetime.fromtimestamp(nxt, ZoneInfo(zone)).strftime("%a %d %H:%M %Z"))
        cursor = nxt
    return out


def job(repeat: str = "once", due: float = 0.0, **fields: object) -> Job:
    base = Job(
        "abc234", "p", "test:u", JobKind.REMINDER, "x", repeat, None, None, "Europe/Berlin",
        Conversation("test", "c"), due, due, JobStatus.SENDING, 1, "a1", None, None, None, 0,
        None, 0.0,
    )  # fmt: skip
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


FRIDAY_5PM = berlin(2025, 3, 7, 17, 0)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # crontab numbers days from Sunday = 0; APScheduler 3 from Monday = 0. Both must hold.
        ("0 9 * * 1-5", ["Mon 10 09:00 CET", "Tue 11 09:00 CET", "Wed 12 09:00 CET"]),
        ("0 9 * * 0", ["Sun 09 09:00 CET", "Sun 16 09:00 CET", "Sun 23 09:00 CET"]),
        ("0 9 * * 7", ["Sun 09 09:00 CET", "Sun 16 09:00 CET", "Sun 23 09:00 CET"]),
        ("30 8 * * mon,fri", ["Mon 10 08:30 CET", "Fri 14 08:30 CET", "Mon 17 08:30 CET"]),
        ("0 12 * * 5-7", ["Sat 08 12:00 CET", "Sun 09 12:00 CET", "Fri 14 12:00 CET"]),
        ("*/20 17 * * *", ["Fri 07 17:20 CET", "Fri 07 17:40 CET", "Sat 08 17:00 CET"]),
        ("0 0 1 * *", ["Tue 01 00:00 CEST", "Thu 01 00:00 CEST", "Sun 01 00:00 CEST"]),
        ("0 9 */10 * *", ["Tue 11 09:00 CET", "Fri 21 09:00 CET", "Mon 31 09:00 CEST"]),
    ],
)
def test_cron_next_runs(expr: str, expected: list[str]) -> None:
    assert fires(expr, FRIDAY_5PM, 3) == expected


def test_cron_runs_in_the_jobs_zone() -> None:
    assert fires("0 9 * * *", FRIDAY_5PM, 1, "America/New_York") == ["Sat 08 09:00 EST"]
    saturday_9am_utc = datetime(2025, 3, 8, 9, tzinfo=UTC).timestamp()
    assert next_cron("0 9 * * *", "UTC", FRIDAY_5PM) == saturday_9am_utc


def test_cron_keeps_the_wall_time_across_spring_forward() -> None:
    saturday = berlin(2025, 3, 29, 12, 0)
    assert fires("0 9 * * *", saturday, 2) == ["Sun 30 09:00 CEST", "Mon 31 09:00 CEST"]
    # 02:30 does not exist on the 30th: the run moves to 03:30 CEST rather than vanishing
    assert fires("30 2 * * *", saturday, 2) == ["Sun 30 03:30 CEST", "Mon 31 02:30 CEST"]
    # APScheduler 3.11 given the zone itself would skip both of these
    assert fires("0 0 * * *", berlin(2025, 3, 30, 0, 30), 2) == [
        "Mon 31 00:00 CEST", "Tue 01 00:00 CEST",
    ]  # fmt: skip
    assert fires("0 0 1 * *", berlin(2025, 3, 7), 1) == ["Tue 01 00:00 CEST"]
    # hourly runs skip the hour that does not exist
    assert fires("0 * * * *", berlin(2025, 3, 30, 0, 30), 3) == [
        "Sun 30 01:00 CET", "Sun 30 03:00 CEST", "Sun 30 04:00 CEST",
    ]  # fmt: skip


def test_cron_fires_once_when_the_clocks_go_back() -> None:
    saturday = berlin(2025, 10, 25, 12, 0)
    # 02:30 happens twice on the 26th; a daily job runs at the first one only
    assert fires("30 2 * * *", saturday, 2) == ["Sun 26 02:30 CEST", "Mon 27 02:30 CET"]
    # an hourly job runs in both copies of the hour: an hour did pass
    assert fires("0 * * * *", berlin(2025, 10, 26, 1, 30), 3) == [
        "Sun 26 02:00 CEST", "Sun 26 02:00 CET", "Sun 26 03:00 CET",
    ]  # fmt: skip


def test_interval_is_elapsed_time_across_dst() -> None:
    start = berlin(2025, 3, 30, 0, 0)
    p = plan(Every(timedelta(hours=2)), "Europe/Berlin", start, 60)
    assert p.first_due - start == 7200
    interval = job("interval", p.first_due, interval_s=7200.0)
    nxt = following(interval, p.first_due)
    assert nxt is not None and nxt - p.first_due == 7200
    assert datetime.fromtimestamp(nxt, BERLIN).hour == 5  # 02:00 CET + 2h = 05:00 CEST


@pytest.mark.parametrize(
    ("expr", "error"),
    [
        ("0 9 * *", "5 fields"),
        ("60 9 * * *", "outside 0-59"),
        ("0 9 0 * *", "outside 1-31"),
        ("0 9 * * 8", "outside 0-7"),
        ("0 9 * * funday", "not a number or name"),
        ("*/0 * * * *", "bad step"),
        ("0 9 1 * 1", "not both"),
    ],
)
def test_cron_validation(expr: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        cron_sets(expr)


def test_plan_checks_the_minimum_interval_and_the_past() -> None:
    now = FRIDAY_5PM
    with pytest.raises(ValueError, match="shortest repeat allowed is 1m"):
        plan(Every(timedelta(seconds=30)), "UTC", now, 60)
    with pytest.raises(ValueError, match="shortest repeat allowed is 5m"):
        plan(Cron("* * * * *"), "UTC", now, 300)
    with pytest.raises(ValueError, match="never fires"):
        plan(Cron("0 0 30 2 *"), "UTC", now, 60)
    with pytest.raises(ValueError, match="has already passed"):
        plan(Once(datetime.fromtimestamp(now - 1, UTC)), "UTC", now, 60)
    weekdays = plan(Cron("0 9 * * 1-5"), "Europe/Berlin", now, 60)
    assert (weekdays.repeat, weekdays.cron, weekdays.first_due) == (
        "cron", "0 9 * * 1-5", berlin(2025, 3, 10, 9, 0),
    )  # fmt: skip


def test_catch_up_coalesces_missed_runs_into_the_latest() -> None:
    due = berlin(2025, 3, 3, 9, 0)
    hourly = job("interval", due, interval_s=3600.0)
    now = due + 5 * 3600 + 600  # five runs missed, the last one 10 minutes ago
    latest = catch_up(hourly, now, max_lateness=86_400)
    assert latest == due + 5 * 3600
    assert following(hourly, latest) == due + 6 * 3600  # from the schedule, not from now

    daily = job("cron", due, cron="0 9 * * *")
    three_days_later = berlin(2025, 3, 6, 9, 30)
    assert catch_up(daily, three_days_later, 86_400) == berlin(2025, 3, 6, 9, 0)
    assert following(daily, berlin(2025, 3, 6, 9, 0)) == berlin(2025, 3, 7, 9, 0)


def test_catch_up_gives_up_beyond_the_maximum_lateness() -> None:
    due = berlin(2025, 3, 3, 9, 0)
    assert catch_up(job("once", due), due + 3600, max_lateness=7200) == due
    assert catch_up(job("once", due), due + 7201, max_lateness=7200) is None
    daily = job("cron", due, cron="0 9 * * *")
    # three days down, allowed one hour late: the latest run (09:00 today) is 5h late
    assert catch_up(daily, berlin(2025, 3, 6, 14, 0), max_lateness=3600) is None
    assert following(daily, berlin(2025, 3, 6, 14, 0)) == berlin(2025, 3, 7, 9, 0)


def test_durations_and_descriptions() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("an hour") == timedelta(hours=1)
    assert parse_duration("2 days, 3 hours") == timedelta(days=2, hours=3)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
    shown = [human_duration(s) for s in (4.6, 125, 3725, 90_061)]
    assert shown == ["5s", "2m 5s", "1h 2m", "1d 1h"]
    assert describe_repeat(job("cron", cron="0 9 * * 1-5")) == "every weekday at 09:00"
    assert describe_repeat(job("cron", cron="30 7 * * *")) == "every day at 07:30"
    assert describe_repeat(job("cron", cron="0 19 * * 0,4")) == "every Thu, Sun at 19:00"
    assert describe_repeat(job("cron", cron="*/15 8-18 * * *")) == "cron */15 8-18 * * *"
    assert describe_repeat(job("interval", interval_s=7200.0)) == "every 2h"
    assert describe_repeat(job("once")) == ""
