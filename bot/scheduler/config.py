"""The `[scheduler]` section of config.toml."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SchedulerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: the zone for people who have not set their own (identities.timezone)
    default_timezone: str = "UTC"
    #: a job found this late (after downtime or failed attempts) is marked missed and summarized
    max_lateness_seconds: float = Field(default=86_400.0, gt=0)
    #: deliveries later than this carry a "late by ..." note
    late_note_after_seconds: float = Field(default=60.0, ge=0)
    max_active_jobs_per_person: int = Field(default=50, ge=1)
    #: the shortest repeat allowed for interval and cron jobs
    min_interval_seconds: float = Field(default=60.0, gt=0)
    #: how long a claimed delivery is reserved; after a crash it is retried once this runs out
    lease_seconds: float = Field(default=60.0, gt=0)
    #: the delivery loop also wakes this often, in case a wake-up was lost
    poll_seconds: float = Field(default=30.0, gt=0)
    max_concurrent_deliveries: int = Field(default=64, ge=1)

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            hint = "use an IANA name like Europe/Berlin"
            raise ValueError(f"unknown time zone {value!r} ({hint})") from None
        return value


_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")

DEFAULT_CHECKIN_PROMPT = (
    "This is a scheduled check-in, not a message from the person. Look at what you know "
    "about them and at their open reminders, and write one short, useful note if something "
    "deserves it now (a reminder coming up today, something they said they would do). Do not "
    "make small talk."
)


def checkin_cron(text: str) -> str:
    """ "daily 8:30" -> "30 8 * * *", "weekdays 8:30" -> "30 8 * * 1-5"; ValueError otherwise."""
    words = text.lower().split()
    if len(words) != 2 or words[0] not in ("daily", "weekdays"):
        raise ValueError(f"{text!r}: expected `daily 8:30` or `weekdays 8:30`")
    hour, minute = clock_time(words[1])
    return f"{minute} {hour} * * {'*' if words[0] == 'daily' else '1-5'}"


def clock_time(text: str) -> tuple[int, int]:
    """ "8:30" -> (8, 30); ValueError otherwise. Any decimal digits, as /remind reads them,
    and a phone's full-width colon ("８:３０", "８：３０" too)."""
    typed = text.strip().replace("\uff1a", ":")  # FULLWIDTH COLON
    ascii_digits = "".join(str(int(c)) if c.isdecimal() else c for c in typed)
    match = _CLOCK.fullmatch(ascii_digits)
    if match is None:
        raise ValueError(f"{text!r} is not a time like 8:30 or 21:00")
    return int(match[1]), int(match[2])


class CheckinConfig(BaseModel):
    """The `[checkins]` section: proactive check-ins (`/checkin daily 8:30`)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: "22:00-08:00" in each person's time zone: a check-in due then waits until it ends;
    #: "" for none
    quiet_hours: str = "22:00-08:00"
    #: the most output tokens a check-in's model calls may write together (per run)
    max_output_tokens: int = Field(default=300, ge=16)
    prompt: str = DEFAULT_CHECKIN_PROMPT
    #: what the model answers when there is nothing worth saying; such an answer is not sent
    nothing_marker: str = Field(default="NOTHING", min_length=1)
    #: check-ins set here rather than with /checkin: identity key -> "daily 8:30" (or
    #: "weekdays 8:30"); delivered in that identity's direct messages
    people: dict[str, str] = Field(default_factory=dict)

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        if value.strip():
            start, sep, end = value.partition("-")
            if not sep:
                raise ValueError(f"{value!r}: expected a range like 22:00-08:00")
            clock_time(start)
            clock_time(end)
        return value.strip()

    @field_validator("people")
    @classmethod
    def _people(cls, people: dict[str, str]) -> dict[str, str]:
        for key, schedule in people.items():
            channel, _, user_id = key.partition(":")
            if not channel or not user_id:
                raise ValueError(f"{key!r} is not an identity key like telegram:123456")
            checkin_cron(schedule)
        return people

    def quiet_range(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        if not self.quiet_hours:
            return None
        start, _, end = self.quiet_hours.partition("-")
        return clock_time(start), clock_time(end)
