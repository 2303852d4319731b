"""What the scheduler tells a person when a delivery cannot happen: a job paused because its
conversation refused it (said elsewhere, where only that person reads), and the jobs found too
late to deliver (one summary per conversation)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

from bot.errors import DeliveryRefused
from bot.messages import Conversation
from bot.scheduler import text as texts
from bot.scheduler.ports import NotAllowedNow
from bot.store.jobs import Job, JobRepo, Miss

# the lines of a delivery stay under the scheduler's own logger name
log = logging.getLogger("bot.scheduler.service")

Send = Callable[[Conversation, str], Awaitable[str]]
#: the scheduler's `may_deliver`: raises NotAllowedNow when the job's person may no longer
#: be answered where the job delivers
MayDeliver = Callable[[Job], Awaitable[object]]

_GONE_NOTICE_TRIES = 3


async def always_allowed(job: Job) -> None:
    """The `may_deliver` of a scheduler given none: every job may deliver."""


async def _allowed(may_deliver: MayDeliver, job: Job) -> bool:
    """Whether the job's person may still be answered where `job` delivers: a notice quotes
    the job's text, and a person no longer allowed there is told nothing."""
    try:
        await may_deliver(job)
    except NotAllowedNow as exc:
        log.info("job %s: nothing said about it (%s)", job.id, exc)
        return False
    return True


async def pause_refused(
    jobs: JobRepo,
    job: Job,
    exc: DeliveryRefused,
    now: float,
    send: Send,
    may_deliver: MayDeliver = always_allowed,
) -> None:
    log.warning(
        "job %s paused: %s refused its delivery (%s)",
        job.id,
        job.conversation.session_key,
        exc.reason,
    )
    # the platform's short reason, as a failed delivery keeps it
    error = f"{type(exc).__name__}: {exc.reason}"
    if not await jobs.pause(job, error=error, now=now):
        return
    # only where nobody else reads along: the notice quotes the job's text
    notice = texts.paused_notice(job, exc.reason)
    others = await jobs.direct_conversations(job.person_id, job.conversation)
    for conversation, identity_key in others[:_GONE_NOTICE_TRIES]:
        # asked as the account that speaks there (a linked person's other DMs are other
        # accounts, each allowed or revoked on its own channel)
        there = dataclasses.replace(job, conversation=conversation, identity_key=identity_key)
        try:
            if not await _allowed(may_deliver, there):
                continue
            await send(conversation, notice)
            return
        except Exception as err:
            log.info("could not tell %s in %s: %s", job.person_id, conversation.session_key, err)


async def report_missed(
    jobs: JobRepo,
    max_lateness_s: float,
    send: Send,
    clock: Callable[[], float],
    may_deliver: MayDeliver = always_allowed,
) -> int:
    """Send each conversation its summary; returns how many could not be sent now."""
    failed = 0
    misses = await jobs.unreported_misses()
    groups: dict[tuple[str, Conversation], list[Miss]] = {}
    for miss in misses:
        groups.setdefault((miss.job.person_id, miss.job.conversation), []).append(miss)
    # per conversation, not per person: a list of what was set in a DM must not be
    # posted in a group the person also uses
    for (person_id, conversation), group in groups.items():
        told: list[Miss] = []  # the jobs the summary names, not the ones skipped unsaid
        try:
            # each job asked as the account it was set by (a linked person may have set
            # some there from another): one revoked there is reported without a word, as
            # its reminders are skipped without one
            told = [miss for miss in group if await _allowed(may_deliver, miss.job)]
            if told:
                await send(conversation, texts.missed_summary(told, max_lateness_s))
        except DeliveryRefused as exc:
            log.warning(
                "%d missed jobs of %s: their conversation refused the summary (%s)",
                len(told),
                person_id,
                exc.reason,
            )
        except Exception as exc:
            log.warning(
                "could not send the missed-jobs summary to %s (tried again later): %s",
                person_id,
                exc,
            )
            failed += 1
            continue
        await jobs.mark_reported(group, clock())
    return failed
