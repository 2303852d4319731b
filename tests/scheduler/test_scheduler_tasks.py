"""Scheduled tasks: the prompt runs and its answer is delivered; a task cancelled while it
runs sends nothing; one that runs past its lease is not claimed by another replica."""

from __future__ import annotations

import asyncio

import pytest

from bot.scheduler import Job, JobKind, JobStatus, ScheduleError, Scheduler

from .conftest import EchoTaskRunner, FakeClock, MakeScheduler, RecordingDeliverer, once_in, remind


async def task_due(scheduler: Scheduler, clock: FakeClock) -> str:
    """A task "summarize my inbox", scheduled a minute ahead and now due."""
    job_id = await remind(scheduler, once_in(clock, 60), "summarize my inbox", kind=JobKind.TASK)
    clock.advance(60)
    return job_id


async def test_a_task_cancelled_while_its_prompt_runs_sends_nothing(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    class CancelledMidway(EchoTaskRunner):
        """The person cancels the task while the model is still working on it."""

        async def run_task(self, job: Job) -> str:
            assert await scheduler.cancel("alice", job.id)
            return await super().run_task(job)

    runner = CancelledMidway()
    scheduler = make_scheduler(runner)
    job_id = await task_due(scheduler, clock)
    await scheduler.deliver_due()
    assert [j.id for j in runner.jobs] == [job_id]
    # the person was told "Cancelled", so the answer made meanwhile must not follow it
    assert deliverer.texts() == []
    job = await scheduler.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED


async def test_a_task_running_longer_than_the_lease_is_not_claimed_by_another_replica(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    """Its lease is renewed while the prompt runs; once it ran out, the other replica's
    scheduler claimed the job and ran the prompt again, tools and all (and again, and again,
    each lease later)."""

    class SlowTask(EchoTaskRunner):
        def __init__(self) -> None:
            super().__init__()
            self.started, self.finish = asyncio.Event(), asyncio.Event()

        async def run_task(self, job: Job) -> str:
            self.started.set()
            await self.finish.wait()
            return await super().run_task(job)

    runner = SlowTask()
    one, other = (
        make_scheduler(runner, lease_seconds=0.3),
        make_scheduler(runner, lease_seconds=0.3),
    )
    job_id = await task_due(one, clock)
    first = asyncio.create_task(one.deliver_due())
    await runner.started.wait()
    clock.advance(30)  # the prompt runs for 100 leases
    async with asyncio.timeout(10):  # until the holder renewed its lease
        while (job := await one.jobs.get(job_id)) is None or (job.lease_until or 0) < clock.now:
            await asyncio.sleep(0.05)
    assert await other.deliver_due() == 0
    runner.finish.set()
    await first
    assert [j.id for j in runner.jobs] == [job_id]
    assert deliverer.texts() == ["answer to: summarize my inbox"]


async def test_task_runs_its_prompt_and_delivers_the_answer(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    runner = EchoTaskRunner()
    scheduler = make_scheduler(runner)
    job_id = await task_due(scheduler, clock)
    await scheduler.deliver_due()
    assert [j.id for j in runner.jobs] == [job_id]
    assert deliverer.texts() == ["answer to: summarize my inbox"]
    with pytest.raises(ScheduleError, match="tasks are not available"):
        await remind(make_scheduler(), once_in(clock, 60), "x", kind=JobKind.TASK)
