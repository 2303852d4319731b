"""What the scheduler needs from the rest of the gateway (one small Protocol per seam), and
its error for requests that cannot be scheduled."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.errors import DecapodError
from bot.messages import Conversation

if TYPE_CHECKING:
    from bot.store.jobs import Job


class ScheduleError(DecapodError):
    """A request that cannot be scheduled. The message is written for the person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.user_message = message


class Deliverer(Protocol):
    async def deliver(self, conversation: Conversation, text: str) -> str:
        """Send `text`; return the platform's message id. Raise on failure (DeliveryRefused
        when the platform refuses it for good, ConversationGone when the conversation is
        gone)."""
        ...


class TaskFailed(DecapodError):
    """A task's or a check-in's model call failed: nobody is there to ask again, so the
    scheduler tries the job later (until it is too late, when the person is told it was
    missed)."""


class NotAllowedNow(DecapodError):
    """A job's person (a reminder's too) may not be answered where it delivers (a revoked
    pairing, a group no longer allowed): nothing runs or is sent as them this time, and
    nobody is told, not even of their missed jobs.
    A repeating job keeps its schedule, so it runs again once they are allowed again."""


class TaskRunner(Protocol):
    async def run_task(self, job: Job) -> str:
        """Run the job's prompt on session `cron_session_key(job.id)`; return the answer.
        TaskFailed when the model call failed before any tool ran (the apology a chat would
        get is no answer; after a tool ran, trying again would run it twice, so what there
        is, or the note of the failure, is the answer);
        NotAllowedNow when its person may not be answered there now."""
        ...


class CheckinRunner(Protocol):
    def quiet_until(self, job: Job, now: float) -> float | None:
        """When the person's quiet hours end, if `now` is inside them."""
        ...

    async def run_checkin(self, job: Job) -> str | None:
        """The check-in's note, or None when there is nothing worth saying."""
        ...


def valid_zone(zone: str) -> bool:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
