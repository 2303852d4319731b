"""Tools the model schedules, lists and cancels jobs with, always on behalf of the person asking.

The arguments are strict (one way of saying when, local times without guessing), and the
answer states the resolved time in the person's zone so the model can repeat it to them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import Field

from bot.errors import ToolError
from bot.scheduler import text as texts
from bot.scheduler.service import ScheduleError, Scheduler, valid_zone
from bot.scheduler.timing import (
    Cron,
    Every,
    Once,
    WallTimeProblem,
    When,
    format_local,
    later_by,
    local_time,
    parse_duration,
)
from bot.store.jobs import JobKind
from bot.tools import Tool, ToolContext, tool

_JOB_ID = r"^[a-z0-9]{6}$"


def _scheduler(ctx: ToolContext) -> Scheduler:
    scheduler = ctx.deps.scheduler
    if scheduler is None:
        raise ToolError("scheduling is not available here")
    if not ctx.person_id:
        raise ToolError("the person asking is unknown, so nothing can be scheduled for them")
    return scheduler


def _zone(ctx: ToolContext, scheduler: Scheduler) -> str:
    return ctx.timezone if valid_zone(ctx.timezone) else scheduler.config.default_timezone


def _iso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        example = "2025-03-04T18:30"
        raise ToolError(f"at must be a local date and time like {example}, not {text!r}") from None


def _when(
    at: str | None,
    delay: str | None,
    every: str | None,
    cron: str | None,
    zone: str,
    scheduler: Scheduler,
) -> When:
    given = [
        name
        for name, v in (("at", at), ("delay", delay), ("every", every), ("cron", cron))
        if v is not None
    ]
    if len(given) != 1:
        raise ToolError(f"give exactly one of at, delay, every, cron (got {given or 'none'})")
    try:
        if at is not None:
            moment = _iso(at)
            if moment.tzinfo is not None:
                return Once(moment)
            return Once(local_time(moment.date(), moment.hour, moment.minute, ZoneInfo(zone)))
        if delay is not None:
            return Once(later_by(scheduler.now_in(zone), parse_duration(delay)))
        if every is not None:
            return Every(parse_duration(every))
    except WallTimeProblem as exc:
        raise ToolError(f"{exc} Ask the person which time they mean.") from None
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    assert cron is not None
    return Cron(cron)


@tool
async def schedule_job(
    ctx: ToolContext,
    text: Annotated[
        str,
        Field(
            min_length=1,
            max_length=4000,
            description="reminder: the text, sent as is. task: an instruction run at that "
            "time; its answer is sent.",
        ),
    ],
    kind: Literal["reminder", "task"] = "reminder",
    at: Annotated[
        str | None,
        Field(description="the person's local time, ISO 8601 without offset: 2025-03-04T18:30"),
    ] = None,
    delay: Annotated[str | None, Field(description="once, after this long: 20m, 1h30m, 2d")] = None,
    every: Annotated[str | None, Field(description="repeat at this interval: 30m, 2h, 1d")] = None,
    cron: Annotated[
        str | None,
        Field(description="crontab (5 fields, local time): '0 9 * * 1-5' is weekdays at 09:00"),
    ] = None,
) -> str:
    """Schedule a reminder or task here, with exactly one of at, delay, every, cron. If the
    request is ambiguous (no am/pm, no day), ask first. Tell the person the time the result
    states."""
    scheduler = _scheduler(ctx)
    zone = _zone(ctx, scheduler)
    when = _when(at, delay, every, cron, zone, scheduler)
    try:
        job = await scheduler.schedule(
            person_id=ctx.person_id,
            identity_key=ctx.identity.key,
            conversation=ctx.conversation,
            text=text,
            when=when,
            timezone=zone,
            kind=JobKind(kind),
        )
    except ScheduleError as exc:
        raise ToolError(str(exc)) from None
    now = format_local(scheduler.clock(), zone)
    return f"{texts.confirmation(job)}\n(It is now {now}.)"


@tool
async def list_jobs(ctx: ToolContext) -> str:
    """List the person's reminders and scheduled tasks with their ids and next times."""
    scheduler = _scheduler(ctx)
    # in a group the model's answer is read by everyone: it gets only this chat's jobs
    jobs = await scheduler.list_jobs(ctx.person_id)
    return texts.listing_for(jobs, _zone(ctx, scheduler), ctx.conversation)


@tool
async def cancel_job(
    ctx: ToolContext,
    job_id: Annotated[str, Field(pattern=_JOB_ID, description="The id shown by list_jobs")],
) -> str:
    """Cancel one of the person's reminders or scheduled tasks by id."""
    scheduler = _scheduler(ctx)
    if not await scheduler.cancel(ctx.person_id, job_id):
        raise ToolError(f"the person has no open reminder or task {job_id}")
    return f"Cancelled {job_id}."


def scheduler_tools() -> list[Tool]:
    return [schedule_job, list_jobs, cancel_job]
