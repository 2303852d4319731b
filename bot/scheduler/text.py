"""What people read about their jobs: confirmations, listings, delivered texts, notices."""

from __future__ import annotations

from collections.abc import Sequence

from bot.messages import Conversation, ConversationKind
from bot.scheduler.timing import describe_repeat, format_local, human_duration
from bot.store.jobs import SKIPPED_NOT_ALLOWED, Job, JobKind, JobStatus, Miss

REMINDER_MARK = "⏰"


def _clip(text: str, limit: int = 80) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


_LABELS = {JobKind.TASK: "Task", JobKind.CHECKIN: "Check-in"}


def _label(job: Job) -> str:
    return _LABELS.get(job.kind, "Reminder")


def _kind_prefix(job: Job) -> str:
    """ "task: " or "check-in: " before a job's text in a list; a reminder's text is its own."""
    return f"{_label(job).lower()}: " if job.kind in _LABELS else ""


def confirmation(job: Job, note: str = "") -> str:
    """The answer to a new job: its id and when it runs, in the person's zone. The zone is
    named only in a DM: in a group or channel everyone reads it, and it says where the
    person lives (as the listing there leaves it out)."""
    first = format_local(job.due_at, job.timezone)
    repeat = describe_repeat(job)
    zone = f" ({job.timezone})" if job.conversation.kind is ConversationKind.DM else ""
    when = f"{repeat}{zone}, first {first}" if repeat else f"{first}{zone}"
    lines = [f"{_label(job)} {job.id} set for {when}: {_clip(job.text, 200)}"]
    if note:
        lines.append(f"({note}.)")
    return "\n".join(lines)


def describe_job(job: Job) -> str:
    """One listing line: id, next run in the job's zone, how it repeats, state, what."""
    repeat = describe_repeat(job)
    parts = [job.id, format_local(job.run_at, job.timezone)]
    if repeat:
        parts.append(repeat)
    if job.status is JobStatus.PAUSED:
        parts.append(f"PAUSED: {job.last_error or 'delivery failed'}")
    elif job.last_error == SKIPPED_NOT_ALLOWED:
        # it still looks active: say that it did not run, and why
        parts.append("skipped last time: you may not be answered there now")
    what = _kind_prefix(job) + _clip(job.text)
    return " · ".join([*parts, what])


def listing(jobs: Sequence[Job], zone: str) -> str:
    if not jobs:
        return "You have no reminders or scheduled tasks."
    head = f"Your reminders and tasks (your time zone: {zone}):"
    return "\n".join([head, *(f"• {describe_job(j)}" for j in jobs)])


def listing_for(jobs: Sequence[Job], zone: str, where: Conversation) -> str:
    """The listing a person gets in `where`. In a DM: all their jobs. In a group or channel:
    only the jobs that deliver to this very chat (and thread); the others, set in a DM or
    another chat, are counted and never described, since everyone here reads the answer."""
    if where.kind is ConversationKind.DM:
        return listing(jobs, zone)
    here = [j for j in jobs if j.conversation.session_key == where.session_key]
    lines = (
        # not the zone: everyone here reads it, and it says where the person lives
        ["Your reminders and tasks in this chat:"] + [f"• {describe_job(j)}" for j in here]
        if here
        else ["You have no reminders or scheduled tasks in this chat."]
    )
    others = len(jobs) - len(here)
    if others:
        noun = "reminder or task" if others == 1 else "reminders and tasks"
        lines.append(
            f"You have {others} other {noun} set elsewhere: send /reminders in a direct "
            "message with me to see them."
        )
    return "\n".join(lines)


def reminder_text(job: Job) -> str:
    return f"{REMINDER_MARK} {job.text}"


def late_note(due: float, late_by: float, zone: str) -> str:
    return f"(late by {human_duration(late_by)}: this was due {format_local(due, zone)})"


def missed_summary(misses: Sequence[Miss], max_lateness: float) -> str:
    """One message for everything one person missed in one conversation."""
    count = len(misses)
    noun = _label(misses[0].job).lower() if count == 1 else "reminders and tasks"
    lines = [
        f"I could not deliver {count} {noun} in time (more than "
        f"{human_duration(max_lateness)} late), so I skipped:"
    ]
    for miss in misses:
        when = format_local(miss.due_at, miss.job.timezone)
        lines.append(f"• {when}: {_kind_prefix(miss.job)}{_clip(miss.job.text)}")
    return "\n".join(lines)


def paused_notice(job: Job, reason: str) -> str:
    where = job.conversation.kind.value
    return (
        f"I could not deliver {_label(job).lower()} {job.id} ({_clip(job.text, 60)}): the "
        f"{where} chat it belongs to is gone, or I can no longer post there "
        f"({_clip(reason, 80)}). It is paused; `/reminders cancel {job.id}` removes it."
    )
