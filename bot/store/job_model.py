"""What the jobs table holds (reminders, scheduled tasks, check-ins) as typed objects, apart
from the SQL of bot/store/jobs.py, which also exports these names."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.messages import Conversation


class JobKind(StrEnum):
    REMINDER = "reminder"  # its text is delivered as is
    TASK = "task"  # its text is a prompt; the agent's answer is delivered
    CHECKIN = "checkin"  # a proactive check-in (bot/checkins.py); its text is its schedule


class JobStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    MISSED = "missed"
    CANCELLED = "cancelled"
    PAUSED = "paused"


#: the last error of a job whose last run was skipped: its person may not be answered where
#: it delivers (a revoked pairing); it runs again at its next time once they are
SKIPPED_NOT_ALLOWED = "skipped: not allowed"

#: statuses a person still sees in their list and may cancel
OPEN_STATUSES = (JobStatus.PENDING, JobStatus.SENDING, JobStatus.PAUSED)
#: the open statuses of a job that still runs (a paused one waits for its person)
LIVE_STATUSES = (JobStatus.PENDING, JobStatus.SENDING)


def sql_in(statuses: tuple[JobStatus, ...]) -> str:
    """`statuses` as the list of an SQL `status IN ...`."""
    return "(" + ", ".join(f"'{s.value}'" for s in statuses) + ")"


#: for `status IN ...` in SQL
OPEN_SQL = sql_in(OPEN_STATUSES)
LIVE_SQL = sql_in(LIVE_STATUSES)


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    person_id: str
    identity_key: str
    kind: JobKind
    text: str
    repeat: str  # once | interval | cron
    interval_s: float | None
    cron: str | None  # five fields, standard crontab meaning
    timezone: str
    conversation: Conversation
    #: the scheduled time of the occurrence to deliver next
    due_at: float
    #: when delivery is next attempted: due_at, or later after a failed attempt
    run_at: float
    status: JobStatus
    attempt: int
    attempt_id: str | None
    lease_until: float | None
    sent_message_id: str | None
    late_by: float | None
    runs: int
    last_error: str | None
    created_at: float
    #: a task's answer whose sending failed: the next try sends it instead of running again
    answer: str | None = None


@dataclass(frozen=True, slots=True)
class NewJob:
    person_id: str
    identity_key: str
    kind: JobKind
    text: str
    repeat: str
    interval_s: float | None
    cron: str | None
    timezone: str
    conversation: Conversation
    due_at: float
    created_at: float


@dataclass(frozen=True, slots=True)
class Miss:
    """One occurrence of a job that was found too late to deliver."""

    job: Job
    due_at: float


class ActiveJobLimit(Exception):
    def __init__(self, active: int) -> None:
        super().__init__(f"{active} active jobs")
        self.active = active
