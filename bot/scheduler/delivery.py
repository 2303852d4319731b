"""A job the scheduler claimed, delivered (steps 2 and 3 of bot/scheduler/service.py): its
lease renewed while the delivery runs, a task's prompt or a check-in run (or the answer an
earlier try kept, sent without running the prompt again), the text sent with a "late by"
note, and the outcome committed: sent or the next occurrence, a retry with backoff (keeping
what was not shown), or paused when the platform refuses the conversation for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.errors import ChannelError, DeliveryRefused, StorageUnavailable, describe_error
from bot.faults import fault_point
from bot.messages import Conversation
from bot.scheduler import text as texts
from bot.scheduler.notices import pause_refused
from bot.scheduler.ports import NotAllowedNow, ScheduleError
from bot.scheduler.timing import following
from bot.store.jobs import SKIPPED_NOT_ALLOWED, Job, JobKind
from bot.tasks import cancel_and_wait, pause_after

if TYPE_CHECKING:
    from bot.scheduler.service import Scheduler

# one log for the scheduler: its loop, its deliveries and its notices
log = logging.getLogger("bot.scheduler.service")

_RETRY_FIRST_S = 5.0
_RETRY_MAX_S = 300.0
#: pauses between tries of the record of a sent job that the store refused; the last one
#: repeats until it is stored (or the scheduler stops)
_COMMIT_RETRY_S = (1.0, 5.0, 15.0, 60.0)


def backoff(failures: int) -> float:
    """Seconds to wait after `failures` failed tries in a row (at least one)."""
    delay: float = min(_RETRY_FIRST_S * 2 ** max(failures - 1, 0), _RETRY_MAX_S)
    return delay


class JobDelivery:
    """Delivers the scheduler's claimed jobs with the scheduler's parts (its job table,
    config, clock, deliverer and runners, read at each use); `finished` hears of each
    delivery that ended, however it ended."""

    def __init__(self, scheduler: Scheduler, finished: Callable[[Job], None]) -> None:
        self.scheduler = scheduler
        self._finished = finished

    async def deliver_held(self, job: Job, due: float) -> None:
        """Deliver, renewing the claim's lease meanwhile: a task's prompt may run longer
        than the lease, and another replica would claim the job and run it again."""
        renewal = asyncio.create_task(self._renew_lease(job))
        try:
            await self._deliver(job, due)
        finally:
            await cancel_and_wait(renewal)

    async def send(self, conversation: Conversation, text: str) -> str:
        # a send that hangs must not hold up the job or the loop; one that timed out may
        # still have landed, which is the one duplicate a crash may cause as well
        s = self.scheduler
        async with asyncio.timeout(s.config.lease_seconds):
            return await s.deliverer.deliver(conversation, text)

    async def _renew_lease(self, job: Job) -> None:
        s = self.scheduler
        lease = s.config.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            try:
                if not await s.jobs.extend_lease(job, until=s.clock() + lease):
                    return  # cancelled or taken over: the delivery finds out itself
            except Exception as exc:  # tried again: the lease lasts two more tries
                log.warning("could not renew the lease of job %s: %s", job.id, exc)

    async def _deliver(self, job: Job, due: float) -> None:
        s = self.scheduler
        try:
            fault_point("scheduler.claimed")
            late_by = 0.0
            # a task's answer made by an earlier try whose sending failed: sent, not made again
            # (its prompt ran once, tools and all)
            answer = job.answer
            made: str | None = None
            try:
                if job.kind is JobKind.CHECKIN and await self._waits_for_quiet_hours(job):
                    return
                if answer is not None or job.kind is JobKind.REMINDER:
                    # nothing runs for these: whether their person may still be answered
                    # there is asked here (a task's runner asks before its prompt runs)
                    await self.scheduler.may_deliver(job)
                if answer is not None:
                    body: str | None = answer
                elif job.kind in (JobKind.CHECKIN, JobKind.TASK):
                    run = self._run_checkin if job.kind is JobKind.CHECKIN else self._run_task
                    body = answer = await run(job)
                    # the prompt took a while: cancelled meanwhile, its answer is not sent
                    if not await s.jobs.holds(job):
                        log.info(
                            "job %s was cancelled or taken over while it ran: not sent", job.id
                        )
                        return
                else:
                    body = texts.reminder_text(job)
                made = body  # what a retry sends (it adds its own "late by" note)
                late_by = max(s.clock() - due, 0.0)
                # a check-in is about now: no "late by" note
                late = late_by >= s.config.late_note_after_seconds
                if body and late and job.kind is not JobKind.CHECKIN:
                    body += "\n" + texts.late_note(due, late_by, job.timezone)
                # a check-in with nothing to say is done without a message
                message_id = await self.send(job.conversation, body) if body else ""
            except NotAllowedNow as exc:
                await self._skip(job, due, exc)
                return
            except DeliveryRefused as exc:
                # sending again cannot succeed (the chat or topic is gone, the bot was removed)
                await pause_refused(s.jobs, job, exc, s.clock(), self.send, s.may_deliver)
                return
            except ChannelError as exc:
                # sent in several messages, some of which went out: a retry sends the rest
                if exc.delivered and made is not None:
                    # past the end of `made`, only (part of) the note was not shown
                    answer = exc.unsent(made) if exc.delivered < len(made) else ""
                await self._retry_later(job, exc, answer)
                return
            except Exception as exc:
                await self._retry_later(job, exc, answer)
                return
            fault_point("scheduler.delivered")
            if s.on_fired is not None:
                s.on_fired(job, late_by)
            await self._commit_sent(job, due, message_id, late_by)
            fault_point("scheduler.committed")
        except Exception:
            log.exception("delivery of job %s failed; its lease will bring it back", job.id)
        finally:
            self._finished(job)

    async def _commit_sent(self, job: Job, due: float, message_id: str, late_by: float) -> None:
        """Record the sent job; while the store refuses it (busy, full, read-only, out of
        reach), tried again after a pause: given up, the lease would bring the job back and
        it would be sent a second time. The lease is renewed meanwhile only as far as the
        store takes that: a refusal longer than the lease lets another replica claim the job
        and send it again. A stop ends the wait."""
        s = self.scheduler
        tries = 0
        while True:
            try:
                committed = await s.jobs.complete(
                    job,
                    message_id=message_id,
                    late_by=late_by,
                    next_due=following(job, due),
                    now=s.clock(),
                )
            except StorageUnavailable as exc:
                pause = pause_after(_COMMIT_RETRY_S, tries)
                tries += 1
                log.warning(
                    "job %s was sent but the store refused its record (%s); trying again in %.0fs",
                    job.id,
                    exc,
                    pause,
                )
                await asyncio.sleep(pause)
                continue
            if not committed and not tries:
                log.warning("job %s changed while it was delivered (cancelled?)", job.id)
            elif not committed:
                # a refused try may have been stored before its answer was lost, or the
                # claim ran out meanwhile: either way the record is no longer this one's
                log.info("job %s: its claim had ended when its record was tried again", job.id)
            return

    async def _skip(self, job: Job, due: float, exc: NotAllowedNow) -> None:
        """This run does not happen: a repeating job waits for its next time (and runs then
        if its person is allowed again), a one-shot one is cancelled. Nothing is said to the
        person, who may not be answered there."""
        s = self.scheduler
        nxt = following(job, due)
        log.info("job %s skipped: %s", job.id, exc)
        # through the claim, as any end of a delivery: a job cancelled or taken over
        # meanwhile is left as it is now
        if nxt is None:
            done = await s.jobs.cancel_claimed(job, error=SKIPPED_NOT_ALLOWED, now=s.clock())
        else:
            done = await s.jobs.skip(job, due=nxt, now=s.clock())
            s.wake()  # to arm for its next time
        if not done:
            log.warning("job %s changed while it was skipped (cancelled?)", job.id)

    async def _run_checkin(self, job: Job) -> str | None:
        checkins = self.scheduler.checkins
        if checkins is None:
            raise ScheduleError("check-ins are off")
        return await checkins.run_checkin(job)

    async def _waits_for_quiet_hours(self, job: Job) -> bool:
        """Inside the person's quiet hours the check-in waits (not counted as a failure)."""
        s = self.scheduler
        now = s.clock()
        until = s.checkins.quiet_until(job, now) if s.checkins is not None else None
        if until is None:
            return False
        await s.jobs.retry_later(
            job, run_at=until, error="waits for quiet hours", now=now, answer=job.answer
        )
        s.wake()  # to arm for its new time
        return True

    async def _run_task(self, job: Job) -> str:
        task_runner = self.scheduler.task_runner
        if task_runner is None:
            raise ScheduleError("no task runner is configured")
        return await task_runner.run_task(job)

    async def _retry_later(self, job: Job, exc: Exception, answer: str | None) -> None:
        s = self.scheduler
        delay = backoff(job.attempt)
        log.warning(
            "delivery of job %s failed (attempt %d), retrying in %.0fs: %s",
            job.id,
            job.attempt,
            delay,
            exc,
        )
        now = s.clock()
        await s.jobs.retry_later(
            job, run_at=now + delay, error=describe_error(exc), now=now, answer=answer
        )
        s.wake()  # to arm for the retry
