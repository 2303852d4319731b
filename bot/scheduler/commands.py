"""`/remind` and `/reminders`: the shared commands every channel maps to its platform."""

from __future__ import annotations

from bot.commands import CommandContext, CommandSpec, CommandTable
from bot.scheduler import text as texts
from bot.scheduler.service import ScheduleError

_REMINDERS_USAGE = "/reminders lists yours with their ids; /reminders cancel ID cancels one."


def register_scheduler_commands(table: CommandTable) -> None:
    table.register(
        CommandSpec(
            "remind",
            "Set a reminder: /remind in 20m stretch",
            _remind,
            usage="<when> <what>",
            arg_name="request",
        )
    )
    table.register(
        CommandSpec(
            "reminders",
            "List your reminders, or cancel one: /reminders cancel ID",
            _reminders,
            usage="[cancel ID]",
            arg_name="action",
        )
    )


async def _remind(ctx: CommandContext) -> str:
    scheduler = ctx.deps.scheduler
    if scheduler is None:
        return "Reminders are not available here."
    identity = ctx.message.identity
    zone = await scheduler.timezone_for(identity.key)
    # the grammar (a few dozen regular expressions) is compiled with the first /remind,
    # not at the start
    from bot.scheduler.grammar import Clarify, parse_reminder

    parsed = parse_reminder(ctx.args, scheduler.now_in(zone))
    if isinstance(parsed, Clarify):
        return parsed.question
    try:
        job = await scheduler.schedule(
            person_id=ctx.person_id,
            identity_key=identity.key,
            conversation=ctx.message.conversation,
            text=parsed.text,
            when=parsed.when,
            timezone=zone,
        )
    except ScheduleError as exc:
        return str(exc)
    return texts.confirmation(job, parsed.note)


async def _reminders(ctx: CommandContext) -> str:
    scheduler = ctx.deps.scheduler
    if scheduler is None:
        return "Reminders are not available here."
    words = ctx.args.split()
    if not words or words == ["list"]:
        zone = await scheduler.timezone_for(ctx.message.identity.key)
        jobs = await scheduler.list_jobs(ctx.person_id)
        return texts.listing_for(jobs, zone, ctx.message.conversation)
    if words[0].lower() == "cancel" and len(words) == 2:
        # Only the person's own job, wherever it delivers: a DM job may be cancelled from a
        # group by its id, since the answer shows nothing of it.
        if await scheduler.cancel(ctx.person_id, words[1]):
            return f"Cancelled {words[1].lower()}."
        return f"You have no open reminder or task {words[1]!r}. /reminders lists them."
    return _REMINDERS_USAGE
