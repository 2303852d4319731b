"""The `[scheduler]` section of config.toml."""

from __future__ import annotations

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
