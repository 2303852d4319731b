"""Reminders and scheduled tasks that are never lost.

The jobs table is the truth; a timer on the event loop only wakes the delivery loop at the
next due time (and the loop wakes every `poll_seconds` anyway). A delivery is (2 and 3 are
bot/scheduler/delivery.py):

1. claimed: one atomic UPDATE takes a due row (pending, or sending under an expired lease);
   the lease is renewed every third of it while the delivery runs, so a task's prompt may
   take longer without another replica claiming the job and running it again;
2. sent through the Deliverer (a task first runs its prompt through the TaskRunner; when
   the send fails, its answer is kept with the job, and the retry sends it without running
   the prompt again; of a text cut off after some of its messages went out, only the rest
   is kept, so no message is shown twice);
3. committed: sent (or, for a repeating job, pending at its next occurrence) in one
   transaction, made durable before anything else happens.

A crash between 1 and 2 delivers once the lease runs out; between 2 and 3 it delivers once
more. Platforms have no idempotency key on send, so at-least-once with at most one duplicate
per crash is the bound. A job found late (after downtime) is delivered with a "late by" note
up to `max_lateness_seconds`; later than that it is marked missed, and the person gets one
message per conversation listing what they missed there (sent beside the deliveries, so a
chat whose sends hang holds up nothing; one that failed is tried again with backoff).
Repeating jobs coalesce the runs they missed into one catch-up run and continue from their
schedule, not from the delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.messages import Conversation
from bot.scheduler.config import SchedulerConfig
from bot.scheduler.delivery import JobDelivery, backoff
from bot.scheduler.notices import MayDeliver, always_allowed, report_missed
from bot.scheduler.ports import (
    CheckinRunner,
    Deliverer,
    ScheduleError,
    TaskRunner,
    valid_zone,
)
from bot.scheduler.timing import When, catch_up, following, plan
from bot.store.jobs import ActiveJobLimit, Job, JobKind, JobRepo, NewJob
from bot.tasks import cancel_and_wait

if TYPE_CHECKING:
    from bot.store import Store

# the seams and the error live in ports.py; named here too, where callers import them from
__all__ = ["CheckinRunner", "Deliverer", "ScheduleError", "Scheduler", "TaskRunner", "valid_zone"]

log = logging.getLogger(__name__)

_MAX_TEXT = 4000


class Scheduler:
    def __init__(
        self,
        store: Store,
        deliverer: Deliverer,
        task_runner: TaskRunner | None = None,
        *,
        config: SchedulerConfig,
        clock: Callable[[], float] = time.time,
        on_fired: Callable[[Job, float], None] | None = None,
        checkins: CheckinRunner | None = None,
        may_deliver: MayDeliver = always_allowed,
    ) -> None:
        self.store = store
        self.checkins = checkins
        #: raises NotAllowedNow when the job's person may no longer be answered where it
        #: delivers (a plain reminder is skipped then, as a task is by its runner)
        self.may_deliver = may_deliver
        #: told of each delivered job and how late it was (the `job_fired` hook event)
        self.on_fired = on_fired
        self.jobs = JobRepo(store)
        self.deliverer = deliverer
        self.task_runner = task_runner
        self.config = config
        self.clock = clock
        self._wake = asyncio.Event()
        #: told of each job stored (replicas on one database wake each other with it)
        self.on_scheduled: Callable[[Job], Awaitable[None]] | None = None
        self._in_flight: set[str] = set()
        self._deliveries: set[asyncio.Task[None]] = set()
        self._backlogged = False
        self._loop_task: asyncio.Task[None] | None = None
        #: the wake-up at the next due time (one at a time: a new one replaces it)
        self._timer: asyncio.TimerHandle | None = None
        #: the summary of missed jobs being sent (one at a time, beside the deliveries: a
        #: conversation whose sends hang must not hold up the loop), and when one that
        #: failed may be tried again
        self._reporting: asyncio.Task[None] | None = None
        self._report_failures = 0
        self._report_after = 0.0
        #: delivers each claimed job (bot/scheduler/delivery.py)
        self._delivery = JobDelivery(self, finished=self._delivery_finished)

    # lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        # a timer of the loop, not APScheduler's AsyncIOScheduler (which does the same with
        # call_later): importing that costs a start ~0.1 s, most of it reading every
        # installed package's entry points
        self._loop_task = asyncio.create_task(self._run(), name="decapod-scheduler")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop waking up; give deliveries under way `grace` seconds, then cancel them (their
        leases run out and they are delivered after the next start)."""
        loop_task, self._loop_task = self._loop_task, None
        try:
            await cancel_and_wait(loop_task)
            if self._deliveries:
                await asyncio.wait(set(self._deliveries), timeout=grace)
        finally:
            # also when the stop itself is cancelled (a shutdown out of time): no delivery
            # may go on sending after it
            self._disarm()
            await cancel_and_wait(*self._deliveries)

    # what people and tools call --------------------------------------------------------------
    def now_in(self, zone: str) -> datetime:
        return datetime.fromtimestamp(self.clock(), ZoneInfo(zone))

    async def timezone_for(self, identity_key: str) -> str:
        """The identity's own zone if it set a valid one, else the configured default."""
        zone = await self.store.identities.timezone(identity_key)
        return zone if zone and valid_zone(zone) else self.config.default_timezone

    async def schedule(
        self,
        *,
        person_id: str,
        identity_key: str,
        conversation: Conversation,
        text: str,
        when: When,
        timezone: str,
        kind: JobKind = JobKind.REMINDER,
    ) -> Job:
        """Store a job delivered to `conversation`; raises ScheduleError with the reason."""
        text = text.strip()
        if not person_id:
            raise ScheduleError("I cannot tell who is asking, so I cannot schedule this.")
        if not text:
            raise ScheduleError("There is nothing to send: the text is empty.")
        if len(text) > _MAX_TEXT:
            raise ScheduleError(f"That text is too long (at most {_MAX_TEXT} characters).")
        if kind is JobKind.TASK and self.task_runner is None:
            raise ScheduleError("Scheduled tasks are not available here; reminders are.")
        if not valid_zone(timezone):
            raise ScheduleError(f"{timezone!r} is not a time zone I know.")
        now = self.clock()
        try:
            p = plan(when, timezone, now, self.config.min_interval_seconds)
        except ValueError as exc:
            raise ScheduleError(f"{str(exc)[:1].upper()}{str(exc)[1:]}.") from None
        new = NewJob(
            person_id,
            identity_key,
            kind,
            text,
            p.repeat,
            p.interval_s,
            p.cron,
            timezone,
            conversation,
            p.first_due,
            now,
        )
        try:
            job = await self.jobs.insert(new, max_active=self.config.max_active_jobs_per_person)
        except ActiveJobLimit as exc:
            raise ScheduleError(
                f"You have {exc.active} active reminders and tasks, the most allowed. "
                "Cancel one first (/reminders)."
            ) from None
        log.info("scheduled %s %s (%s) for %s", kind.value, job.id, p.repeat, person_id)
        self._wake.set()
        if self.on_scheduled is not None:
            try:
                await self.on_scheduled(job)
            except Exception as exc:  # the job is stored: the others' next pass finds it
                log.warning("could not announce job %s to other replicas: %s", job.id, exc)
        return job

    def wake(self) -> None:
        """Look for due jobs now (a job was scheduled elsewhere)."""
        self._wake.set()

    async def list_jobs(self, person_id: str) -> list[Job]:
        """The person's open jobs (pending, being sent, paused), soonest first."""
        return await self.jobs.listing(include_closed=False, person_id=person_id)

    async def cancel(self, person_id: str, job_id: str) -> bool:
        """Cancel one of the person's own open jobs; False if there is no such job."""
        return await self.jobs.cancel(job_id.strip().lower(), person_id, self.clock())

    async def deliver_due(self) -> int:
        """One pass of the delivery loop, waiting for the deliveries (and the summary of
        missed jobs) it started."""
        started = await self._pass()
        await asyncio.gather(*started, *([self._reporting] if self._reporting else []))
        return len(started)

    # the delivery loop -----------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            self._wake.clear()
            wake_at: float | None = None
            try:
                await self._pass()
                wake_at = await self.jobs.next_wake(self._in_flight)
            except Exception:
                log.exception("scheduler pass failed; retrying in %ss", self.config.poll_seconds)
            if not self._backlogged:  # else a finishing delivery wakes the loop
                self._arm(wake_at)
            # asyncio.timeout, not wait_for: on 3.11 wait_for returns normally when the
            # cancellation of stop() lands as the wake-up does, and the loop never ends
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll_seconds):
                    await self._wake.wait()

    def _arm(self, at: float | None) -> None:
        self._disarm()
        if at is None:
            return
        delay = at - self.clock()
        if delay <= 0:
            self._wake.set()
            return
        self._timer = asyncio.get_running_loop().call_later(delay, self._wake.set)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _pass(self) -> list[asyncio.Task[None]]:
        cfg = self.config
        now = self.clock()
        free = max(cfg.max_concurrent_deliveries - len(self._in_flight), 0)
        claimed = await self.jobs.claim_due(
            now,
            now + cfg.lease_seconds,
            limit=free,
            overdue_before=now - cfg.max_lateness_seconds,
            busy=self._in_flight,
        )
        # at the limit: more may be due, and a finishing delivery wakes the loop for them
        self._backlogged = len(claimed) >= free
        started: list[asyncio.Task[None]] = []
        missed: list[Job] = []
        later: list[tuple[Job, float]] = []
        for job in claimed:
            occurrence = catch_up(job, now, cfg.max_lateness_seconds)
            if occurrence is None:
                missed.append(job)
            elif len(started) < free:
                started.append(self._start_delivery(job, occurrence))
            else:
                # claimed beyond the limit (after downtime, every overdue job is): delivered
                # by a later pass, at the occurrence it catches up on
                later.append((job, occurrence))
        if missed:
            await asyncio.gather(*(self._mark_missed(job, now) for job in missed))
        for job, occurrence in later:
            await self.jobs.release(job, due=occurrence, now=now)
        reporting = self._reporting is not None and not self._reporting.done()
        if not reporting and now >= self._report_after:
            self._reporting = task = asyncio.create_task(self._report(), name="decapod-missed")
            self._deliveries.add(task)  # stop() ends it with the deliveries
            task.add_done_callback(self._deliveries.discard)
        return started

    async def _report(self) -> None:
        try:
            failed = await report_missed(
                self.jobs,
                self.config.max_lateness_seconds,
                self._delivery.send,
                self.clock,
                self.may_deliver,
            )
        except Exception:
            log.exception("reporting missed jobs failed")
            failed = 1
        if not failed:
            self._report_failures = 0
            return
        # backoff as for a delivery: a chat that keeps failing is not asked on every pass
        self._report_failures += 1
        self._report_after = self.clock() + backoff(self._report_failures)

    def _start_delivery(self, job: Job, due: float) -> asyncio.Task[None]:
        self._in_flight.add(job.id)
        delivery = self._delivery.deliver_held(job, due)
        task = asyncio.create_task(delivery, name=f"decapod-job-{job.id}")
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)
        return task

    def _delivery_finished(self, job: Job) -> None:
        self._in_flight.discard(job.id)
        # the loop ignored this job while it was in flight: wake it to arm for the job's
        # next occurrence, or to claim the due jobs it had no room for
        if self._backlogged or job.repeat != "once":
            self._wake.set()

    async def _mark_missed(self, job: Job, now: float) -> None:
        nxt = following(job, now)
        log.warning("job %s missed its time (due %.0fs ago)", job.id, now - job.due_at)
        await self.jobs.mark_missed(job, missed_due=job.due_at, next_due=nxt, now=now)
