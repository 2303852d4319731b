"""Check-ins: a proactive note the assistant may send a person on a schedule.

A check-in is a repeating job of the scheduler (kind `checkin`), so it is never lost or
doubled. When it comes due, its prompt runs as a turn of the job's own isolated `cron:`
session, as the person (their memory is recalled as in any turn of theirs), with their open
reminders and the local time in the prompt and the answer's length capped. The model answers
the configured "nothing" marker when nothing is worth saying; that answer is never sent.
Inside the person's quiet hours (in their time zone) the check-in waits until they end.
"""

from __future__ import annotations

import datetime as dt
import logging
import string
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.commands import CommandContext, CommandTable, Reply
from bot.messages import Choice, Conversation, identity_from_key
from bot.scheduler.config import CheckinConfig, checkin_cron
from bot.scheduler.ports import ScheduleError
from bot.scheduler.text import describe_job
from bot.scheduler.timing import Cron, format_local
from bot.store.jobs import Job, JobKind

if TYPE_CHECKING:
    from bot.gateway import Gateway
    from bot.scheduler.service import Scheduler

log = logging.getLogger(__name__)

_USAGE = "/checkin daily 8:30 (or weekdays 8:30) sets yours; /checkin off stops it."


def quiet_until(now: float, zone: str, config: CheckinConfig) -> float | None:
    """The end of the quiet hours `now` is in (local time in `zone`), or None."""
    quiet = config.quiet_range()
    if quiet is None:
        return None
    (start_h, start_m), (end_h, end_m) = quiet
    tz = ZoneInfo(zone)
    local = dt.datetime.fromtimestamp(now, tz)
    minute, start, end = local.hour * 60 + local.minute, start_h * 60 + start_m, end_h * 60 + end_m
    inside = start <= minute < end if start <= end else minute >= start or minute < end
    if not inside:
        return None
    day = local.date() if minute < end else local.date() + dt.timedelta(days=1)
    # a wall time the clocks skip resolves forward, which is still after the quiet hours
    ends = dt.datetime.combine(day, dt.time(end_h, end_m), tzinfo=tz).timestamp()
    return ends if ends > now else now + 60


def says_nothing(answer: str, marker: str) -> bool:
    """Is the answer the marker, give or take case, quotes, markup and punctuation?"""
    return answer.strip(string.whitespace + string.punctuation).upper() == marker.upper()


class Checkins:
    """The scheduler's CheckinRunner, and what /checkin changes."""

    def __init__(self, gw: Gateway, config: CheckinConfig) -> None:
        self.gw = gw
        self.config = config

    def _scheduler(self) -> Scheduler:
        scheduler = self.gw.deps.scheduler
        if scheduler is None:
            raise ScheduleError("Check-ins need the scheduler, which is not running.")
        return scheduler

    def quiet_until(self, job: Job, now: float) -> float | None:
        return quiet_until(now, job.timezone, self.config)

    async def run_checkin(self, job: Job) -> str | None:
        if not self.config.enabled:
            return None
        scheduler = self._scheduler()
        marker = self.config.nothing_marker
        others = [j for j in await scheduler.list_jobs(job.person_id) if j.kind != job.kind]
        listed = "\n".join(f"- {describe_job(j)}" for j in others) or "(none)"
        prompt = (
            f"{self.config.prompt}\n\nTheir local time: "
            f"{format_local(scheduler.clock(), job.timezone)}.\n"
            f"Their open reminders and tasks:\n{listed}\n\n"
            f"If nothing is worth saying now, answer exactly {marker} and nothing else."
        )
        answer, result = await self.gw.turns.answer_task(
            job, prompt=prompt, max_output_tokens=self.config.max_output_tokens
        )
        from bot.turn_stream import FAILED

        failed = result.outcome in FAILED  # after a tool ran: the person is told, once
        if not failed and (says_nothing(answer, marker) or not result.text.strip()):
            # nothing, or no text at all (the token cap was spent before the model wrote
            # anything, or it wrote nothing): never the "(no answer)" a chat would get
            log.info("check-in %s: nothing worth saying (%s)", job.id, result.outcome)
            return None
        return answer

    async def current(self, person_id: str) -> Job | None:
        jobs = await self._scheduler().list_jobs(person_id)
        return next((j for j in jobs if j.kind is JobKind.CHECKIN), None)

    async def set(
        self, person_id: str, identity_key: str, conversation: Conversation, schedule: str | None
    ) -> Job | None:
        """Replace the person's check-in with one on `schedule` (None: none)."""
        scheduler = self._scheduler()
        cron = checkin_cron(schedule) if schedule is not None else None
        for job in await scheduler.list_jobs(person_id):
            if job.kind is JobKind.CHECKIN:
                await scheduler.cancel(person_id, job.id)
        if schedule is None or cron is None:
            return None
        return await scheduler.schedule(
            person_id=person_id,
            identity_key=identity_key,
            conversation=conversation,
            text=" ".join(schedule.lower().split()),
            when=Cron(cron),
            timezone=await scheduler.timezone_for(identity_key),
            kind=JobKind.CHECKIN,
        )

    async def apply_config(self) -> None:
        """The check-ins of `[checkins.people]`, made to match the config at each start."""
        from bot.features import owner_dm

        for key, schedule in self.config.people.items():
            person = await self.gw.store.identities.touch(identity_from_key(key))
            current = await self.current(person)
            wanted = " ".join(schedule.lower().split())
            if current is not None and current.text == wanted:
                continue
            await self.set(person, key, owner_dm(key), schedule)
            log.info("check-in for %s set from the config: %s", key, wanted)


def register_checkin_command(table: CommandTable, checkins: Checkins) -> None:
    @table.add(
        "checkin",
        "A check-in from me on a schedule: /checkin daily 8:30, /checkin off",
        usage="[daily H:MM | weekdays H:MM | off]",
        arg_name="schedule",
    )
    async def checkin(ctx: CommandContext) -> str | Reply:
        if not checkins.config.enabled:
            return "Check-ins are off in this gateway's config."
        args = " ".join(ctx.args.lower().split())
        if not ctx.in_dm:  # a check-in is set in a DM: its time and zone are the person's own
            return "Check-ins are personal: see or set yours in a direct message with me."
        if not args:
            return await _show(checkins, ctx.person_id)
        key = ctx.message.identity.key
        try:
            job = await checkins.set(
                ctx.person_id, key, ctx.message.conversation, None if args == "off" else args
            )
        except ValueError:
            return f"I did not understand {ctx.args.strip()!r}. {_USAGE}"
        except ScheduleError as exc:
            return str(exc)
        if job is None:
            return "Check-ins are off. /checkin daily 8:30 starts them again."
        first = format_local(job.due_at, job.timezone)
        quiet = checkins.config.quiet_hours
        note = f" Quiet hours {quiet} ({job.timezone}) are kept." if quiet else ""
        return f"I will check in {args} ({job.timezone}); first {first}.{note}"


async def _show(checkins: Checkins, person_id: str) -> str | Reply:
    job = await checkins.current(person_id)
    if job is None:
        return f"You have no check-in. {_USAGE}"
    quiet = checkins.config.quiet_hours or "none"
    nxt = format_local(job.run_at, job.timezone)
    text = (
        f"Your check-in: {job.text} ({job.timezone}), next {nxt}. Quiet hours: {quiet}.\n{_USAGE}"
    )
    return Reply(text, (Choice("Stop check-ins", "/checkin off"),))
