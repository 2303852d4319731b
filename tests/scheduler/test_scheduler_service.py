"""The Scheduler service: delivery, lateness, missed summaries, pausing, limits, isolation."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from bot.messages import Conversation, Identity
from bot.scheduler import JobStatus, ScheduleError, Scheduler
from bot.scheduler.timing import Cron, Every, Once
from bot.store import Store

from .conftest import DM, GROUP, FakeClock, MakeScheduler, RecordingDeliverer, once_in, remind


async def test_reminder_is_delivered_verbatim_at_its_time(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler()
    job_id = await remind(scheduler, once_in(clock, 1200), "Take the *pizza* out!")
    clock.advance(1199)
    assert await scheduler.deliver_due() == 0
    clock.advance(1)
    assert await scheduler.deliver_due() == 1
    assert deliverer.sent == [(DM, "⏰ Take the *pizza* out!")]
    job = await scheduler.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.SENT and job.sent_message_id == "m1"
    assert await scheduler.deliver_due() == 0 and len(deliverer.sent) == 1
    assert await scheduler.list_jobs("alice") == []


async def test_late_delivery_carries_a_note(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler(late_note_after_seconds=60)
    job_id = await remind(scheduler, once_in(clock, 600))
    clock.advance(600 + 30)  # within the grace: no note
    await scheduler.deliver_due()
    second = await remind(scheduler, once_in(clock, 60))
    clock.advance(60 + 3 * 3600 + 300)  # down for three hours
    await scheduler.deliver_due()
    assert deliverer.texts() == [
        "⏰ stretch",
        "⏰ stretch\n(late by 3h 5m: this was due Mon 3 Mar 2025 17:11 CET)",
    ]
    late = await scheduler.jobs.get(second)
    on_time = await scheduler.jobs.get(job_id)
    assert late is not None and late.late_by == pytest.approx(3 * 3600 + 300)
    assert on_time is not None and on_time.late_by == pytest.approx(30)


async def test_too_late_is_missed_and_summarized_once(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler(max_lateness_seconds=3600)
    first = await remind(scheduler, once_in(clock, 60), "call mom")
    second = await remind(scheduler, once_in(clock, 120), "water the plants")
    in_group = await remind(scheduler, once_in(clock, 180), "team lunch", conversation=GROUP)
    clock.advance(2 * 3600)  # past all three by more than an hour
    assert await scheduler.deliver_due() == 0
    dm, group = deliverer.texts(DM.chat_id), deliverer.texts(GROUP.chat_id)
    assert len(dm) == 1 and len(group) == 1  # one summary per conversation, none delivered late
    assert dm[0].startswith("I could not deliver 2 reminders and tasks in time (more than 1h")
    assert "• Mon 3 Mar 2025 17:01 CET: call mom" in dm[0]
    assert "• Mon 3 Mar 2025 17:02 CET: water the plants" in dm[0]
    assert "team lunch" in group[0] and "call mom" not in group[0]
    for job_id in (first, second, in_group):
        job = await scheduler.jobs.get(job_id)
        assert job is not None and job.status is JobStatus.MISSED
    await scheduler.deliver_due()
    assert len(deliverer.sent) == 2


async def test_missed_summary_is_retried_until_it_goes_out(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler(max_lateness_seconds=60)
    await remind(scheduler, once_in(clock, 60), "call mom")
    clock.advance(600)
    deliverer.failures = 1
    await scheduler.deliver_due()
    assert deliverer.sent == []
    clock.advance(5)  # a failed summary waits like a failed delivery
    await scheduler.deliver_due()
    assert len(deliverer.sent) == 1 and "call mom" in deliverer.sent[0][1]


async def test_interval_job_follows_its_schedule_not_the_delivery_time(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler()
    start = clock.now
    job_id = await remind(scheduler, Every(timedelta(hours=2)), "drink water")
    clock.advance(2 * 3600 + 20)  # delivered 20 s late
    await scheduler.deliver_due()
    job = await scheduler.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.PENDING and job.runs == 1
    assert job.due_at == start + 4 * 3600
    clock.advance(10 * 3600)  # down for ten hours: one catch-up run, then back on the grid
    await scheduler.deliver_due()
    job = await scheduler.jobs.get(job_id)
    assert job is not None and job.runs == 2 and job.due_at == start + 14 * 3600
    assert deliverer.texts() == ["⏰ drink water", "⏰ drink water"]  # 20 s: under the note


async def test_cron_job_beyond_lateness_is_missed_and_continues(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler(max_lateness_seconds=3600)
    job_id = await remind(scheduler, Cron("0 9 * * *"), "standup")  # next: Tue 4 Mar 09:00
    clock.now = datetime(2025, 3, 6, 13, 0, tzinfo=UTC).timestamp()  # Thu 14:00 in Berlin
    await scheduler.deliver_due()
    [summary] = deliverer.texts()
    assert "• Tue 4 Mar 2025 09:00 CET: standup" in summary
    job = await scheduler.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.PENDING
    assert job.due_at == datetime(2025, 3, 7, 8, 0, tzinfo=UTC).timestamp()  # Fri 09:00 CET


async def test_gone_conversation_pauses_the_job_and_tells_the_person_elsewhere(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler()
    await remind(scheduler, once_in(clock, 7200), "later", conversation=DM)
    job_id = await remind(scheduler, once_in(clock, 60), "team lunch", conversation=GROUP)
    deliverer.gone.add(GROUP.chat_id)
    clock.advance(60)
    await scheduler.deliver_due()
    job = await scheduler.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.PAUSED
    assert job.last_error == "ConversationGone: chat group-1 was deleted"
    [notice] = deliverer.texts(DM.chat_id)
    assert f"/reminders cancel {job_id}" in notice and "team lunch" in notice
    clock.advance(3600)
    await scheduler.deliver_due()  # paused: not retried
    assert len(deliverer.sent) == 1
    listed = {j.id: j.status for j in await scheduler.list_jobs("alice")}
    assert listed[job_id] is JobStatus.PAUSED
    assert await scheduler.cancel("alice", job_id)


async def test_a_refused_delivery_pauses_the_job_with_the_platforms_reason(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler()
    await remind(scheduler, once_in(clock, 7200), "later", conversation=DM)
    job_id = await remind(scheduler, once_in(clock, 60), "team lunch", conversation=GROUP)
    deliverer.refusing[GROUP.chat_id] = "message thread not found"  # a deleted forum topic
    clock.advance(60)
    await scheduler.deliver_due()
    job = await scheduler.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.PAUSED
    assert job.last_error == "DeliveryRefused: message thread not found"
    [notice] = deliverer.texts(DM.chat_id)
    assert "message thread not found" in notice and f"/reminders cancel {job_id}" in notice
    clock.advance(3600)
    await scheduler.deliver_due()  # paused: not tried again
    assert len(deliverer.sent) == 1


async def test_notice_about_a_gone_direct_chat_is_not_posted_in_a_group(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler()
    await remind(scheduler, once_in(clock, 7200), "team lunch", conversation=GROUP)
    job_id = await remind(scheduler, once_in(clock, 60), "my private thing", conversation=DM)
    deliverer.gone.add(DM.chat_id)
    clock.advance(60)
    await scheduler.deliver_due()
    job = await scheduler.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.PAUSED
    assert deliverer.sent == []


async def test_a_send_that_hangs_times_out_and_is_retried(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler(lease_seconds=0.2)
    job_id = await remind(scheduler, once_in(clock, 60))

    class HangingOnce(RecordingDeliverer):
        hung = False

        async def deliver(self, conversation: Conversation, text: str) -> str:
            if not self.hung:
                self.hung = True
                await asyncio.sleep(3600)
            return await super().deliver(conversation, text)

    scheduler.deliverer = hanging = HangingOnce()
    clock.advance(60)
    await scheduler.deliver_due()
    job = await scheduler.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.PENDING
    assert job.last_error == "TimeoutError"
    clock.advance(5)
    await scheduler.deliver_due()
    assert hanging.texts() == ["⏰ stretch"]


async def test_failed_send_is_retried_with_backoff(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler()
    job_id = await remind(scheduler, once_in(clock, 60))
    clock.advance(60)
    deliverer.failures = 2
    await scheduler.deliver_due()
    job = await scheduler.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.PENDING and job.run_at == clock.now + 5
    assert job.last_error == "RuntimeError: platform answered 502"
    clock.advance(4)
    assert await scheduler.deliver_due() == 0
    clock.advance(1)
    await scheduler.deliver_due()  # second failure: waits 10 s
    clock.advance(10)
    await scheduler.deliver_due()
    job = await scheduler.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.SENT and job.attempt == 3
    assert deliverer.texts() == ["⏰ stretch"]


async def test_expired_lease_is_claimed_again(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler(lease_seconds=30)
    job_id = await remind(scheduler, once_in(clock, 60))
    clock.advance(60)
    # another process claimed it and died before sending
    [claimed] = await scheduler.jobs.claim_due(
        clock.now, clock.now + 30, limit=10, overdue_before=0, busy=()
    )
    assert claimed.status is JobStatus.SENDING and claimed.attempt == 1
    clock.advance(29)
    assert await scheduler.deliver_due() == 0
    clock.advance(2)
    assert await scheduler.deliver_due() == 1
    job = await scheduler.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.SENT and job.attempt == 2
    assert job.attempt_id != claimed.attempt_id and deliverer.texts() == ["⏰ stretch"]


async def test_cancel_during_delivery_is_not_undone(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler()
    job_id = await remind(scheduler, Every(timedelta(hours=1)))

    class CancellingDeliverer(RecordingDeliverer):
        async def deliver(self, conversation: Conversation, text: str) -> str:
            assert await scheduler.cancel("alice", job_id)
            return await super().deliver(conversation, text)

    scheduler.deliverer = CancellingDeliverer()
    clock.advance(3600)
    await scheduler.deliver_due()
    job = await scheduler.jobs.get(job_id)
    assert job is not None and job.status is JobStatus.CANCELLED
    clock.advance(3600)
    assert await scheduler.deliver_due() == 0


async def test_limits_on_active_jobs_and_interval(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    scheduler = make_scheduler(max_active_jobs_per_person=2, min_interval_seconds=300)
    first = await remind(scheduler, once_in(clock, 60))
    await remind(scheduler, Every(timedelta(minutes=5)))
    with pytest.raises(ScheduleError, match="You have 2 active reminders"):
        await remind(scheduler, once_in(clock, 60))
    await remind(scheduler, once_in(clock, 60), person="bob")  # the limit is per person
    assert await scheduler.cancel("alice", first)
    await remind(scheduler, once_in(clock, 60))
    rejected: list[tuple[Once | Every | Cron, str]] = [
        (Every(timedelta(minutes=4)), "shortest repeat allowed is 5m"),
        (Cron("*/2 * * * *"), "shortest repeat allowed is 5m"),
        (once_in(clock, -1), "has already passed"),
    ]
    for when, error in rejected:
        with pytest.raises(ScheduleError, match=error):
            await remind(scheduler, when, person="carol")
    with pytest.raises(ScheduleError, match="too long"):
        await remind(scheduler, once_in(clock, 60), "x" * 4001, person="carol")


async def test_people_see_and_cancel_only_their_own_jobs(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    scheduler = make_scheduler()
    alice = await remind(scheduler, once_in(clock, 60), "alice's secret", person="alice")
    bob = await remind(scheduler, once_in(clock, 60), "bob's", person="bob")
    assert [j.id for j in await scheduler.list_jobs("alice")] == [alice]
    assert [j.id for j in await scheduler.list_jobs("bob")] == [bob]
    assert not await scheduler.cancel("bob", alice)
    job = await scheduler.jobs.get(alice)
    assert job is not None and job.status is JobStatus.PENDING
    assert await scheduler.cancel("alice", alice.upper())
    assert not await scheduler.cancel("alice", alice)  # already cancelled


async def test_time_zone_comes_from_the_identity_or_the_default(
    make_scheduler: MakeScheduler, store: Store
) -> None:
    scheduler = make_scheduler(default_timezone="UTC")
    tokyo, nobody = Identity("test", "tokyo"), Identity("test", "nobody")
    await store.identities.touch(tokyo)
    await store.identities.set_timezone(tokyo.key, "Asia/Tokyo")
    assert await scheduler.timezone_for(tokyo.key) == "Asia/Tokyo"
    assert await scheduler.timezone_for(nobody.key) == "UTC"
    await store.identities.set_timezone(tokyo.key, "Mars/Olympus")
    assert await scheduler.timezone_for(tokyo.key) == "UTC"


async def test_running_loop_is_woken_for_the_due_time(
    store: Store, deliverer: RecordingDeliverer
) -> None:
    from bot.scheduler import SchedulerConfig

    # the safety-net poll is far away: only the wake-up at the due time can deliver in time
    config = SchedulerConfig(poll_seconds=30, min_interval_seconds=1)
    scheduler = Scheduler(store, deliverer, config=config)
    await scheduler.start()
    try:
        start = time.time()
        await remind(scheduler, Once(datetime.fromtimestamp(start + 0.3, UTC)), "one")
        await remind(scheduler, Every(timedelta(seconds=1)), "tick")
        while len(deliverer.sent) < 3 and time.time() - start < 20:
            await asyncio.sleep(0.02)
        assert deliverer.texts()[:3] == ["⏰ one", "⏰ tick", "⏰ tick"]
        assert time.time() - start < 20  # well before the 30 s poll; loose for a busy machine
    finally:
        await scheduler.stop()


def test_config_rejects_unknown_keys_and_zones() -> None:
    from pydantic import ValidationError

    from bot.scheduler import SchedulerConfig

    assert SchedulerConfig().max_lateness_seconds == 86_400
    with pytest.raises(ValidationError, match="Extra inputs"):
        SchedulerConfig(max_lateness=60)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="unknown time zone 'Mars/Base'"):
        SchedulerConfig(default_timezone="Mars/Base")
    with pytest.raises(ValidationError, match="greater than 0"):
        SchedulerConfig(lease_seconds=0)


async def test_stop_completes_when_a_wake_up_lands_with_the_cancellation(
    store: Store, deliverer: RecordingDeliverer
) -> None:
    """A wake-up and the stop's cancellation in the same loop iteration: the loop's wait
    must give the cancellation precedence, or the loop runs on and stop() never returns."""
    from bot.scheduler import SchedulerConfig

    config = SchedulerConfig(poll_seconds=3600)
    far = Once(datetime.fromtimestamp(time.time() + 86_400, UTC))
    for i in range(30):
        scheduler = Scheduler(store, deliverer, config=config)
        await scheduler.start()
        await asyncio.sleep(0.02)  # the loop has made its pass and is parked in its wait
        # schedule() sets the wake-up and returns without yielding, so the cancellation
        # reaches the loop in the same iteration as the wake-up
        await remind(scheduler, far, f"r{i}")
        async with asyncio.timeout(10):
            await scheduler.stop()
