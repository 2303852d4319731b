"""The summary of missed jobs goes out beside the deliveries, never in their way: a
conversation whose sends hang holds up no other reminder, and a summary that keeps failing
is tried again with backoff, not on every pass of the loop. A person no longer allowed where
a notice would go is told nothing about their jobs there."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from bot.messages import Conversation
from bot.scheduler import Job, Scheduler
from bot.scheduler.ports import NotAllowedNow
from bot.scheduler.timing import Cron, Once
from bot.store.jobs import JobKind, JobStatus

from .conftest import DM, GROUP, FakeClock, RecordingDeliverer

MakeScheduler = Callable[..., Scheduler]


async def _remind(
    scheduler: Scheduler,
    clock: FakeClock,
    seconds: float,
    text: str,
    where: Conversation,
    identity_key: str = "test:alice",
) -> None:
    await scheduler.schedule(
        person_id="alice",
        identity_key=identity_key,
        conversation=where,
        text=text,
        when=Once(datetime.fromtimestamp(clock.now + seconds, UTC)),
        timezone="Europe/Berlin",
    )


class HangsInGroup(RecordingDeliverer):
    """Sends to the group never return (a platform that accepts and never answers)."""

    def __init__(self) -> None:
        super().__init__()
        self.hanging = asyncio.Event()

    async def deliver(self, conversation: Conversation, text: str) -> str:
        if conversation.chat_id == GROUP.chat_id:
            self.hanging.set()
            await asyncio.Event().wait()
        return await super().deliver(conversation, text)


async def test_a_summary_that_hangs_does_not_hold_up_the_next_reminder(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    scheduler = make_scheduler(max_lateness_seconds=60, lease_seconds=3600)
    scheduler.deliverer = hanging = HangsInGroup()
    await _remind(scheduler, clock, 60, "team lunch", GROUP)
    await _remind(scheduler, clock, 700, "stretch", DM)
    clock.advance(600)  # team lunch is ten minutes late: missed, its summary hangs
    await scheduler.start()
    try:
        await asyncio.wait_for(hanging.hanging.wait(), 10)
        clock.advance(100)  # stretch is due
        scheduler.wake()

        async def stretch_sent() -> None:
            while hanging.texts(DM.chat_id) != ["⏰ stretch"]:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(stretch_sent(), 10)
        # sent while the group's summary still hangs, not after it
        assert hanging.texts(DM.chat_id) == ["⏰ stretch"] and hanging.texts(GROUP.chat_id) == []
    finally:
        await scheduler.stop(grace=0.1)


async def test_a_summary_that_keeps_failing_is_tried_with_backoff(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler(max_lateness_seconds=60)
    await _remind(scheduler, clock, 60, "call mom", DM)
    clock.advance(600)
    tries = 0
    real = deliverer.deliver

    async def failing(conversation: Conversation, text: str) -> str:
        nonlocal tries
        tries += 1
        raise RuntimeError("platform answered 502")

    deliverer.deliver = failing  # type: ignore[method-assign]
    for _ in range(5):  # passes in quick succession: one try
        await scheduler.deliver_due()
    assert tries == 1
    clock.advance(5)
    await scheduler.deliver_due()
    assert tries == 2
    clock.advance(5)  # the wait doubled: 10 s now
    await scheduler.deliver_due()
    assert tries == 2
    deliverer.deliver = real  # type: ignore[method-assign]
    clock.advance(5)
    await scheduler.deliver_due()
    assert len(deliverer.sent) == 1 and "call mom" in deliverer.sent[0][1]
    clock.advance(600)
    await scheduler.deliver_due()
    assert len(deliverer.sent) == 1  # said once


async def test_a_missed_checkin_is_named_as_one_in_the_summary(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    """A check-in's text is its schedule: without its label the summary would read as a
    reminder that says "daily 8:30"."""
    scheduler = make_scheduler(max_lateness_seconds=60)
    await scheduler.schedule(
        person_id="alice",
        identity_key="test:alice",
        conversation=DM,
        text="daily 8:30",
        when=Cron("30 8 * * *"),
        timezone="Europe/Berlin",
        kind=JobKind.CHECKIN,
    )
    [job] = await scheduler.list_jobs("alice")
    clock.advance(job.due_at - clock.now + 600)  # found ten minutes late: missed
    await scheduler.deliver_due()
    [(_, summary)] = deliverer.sent
    assert summary.startswith("I could not deliver 1 check-in in time")
    assert summary.endswith(": check-in: daily 8:30")


class Revoked:
    """The scheduler's `may_deliver` with alice revoked in the conversations in `chats`, or
    as the accounts in `identities` wherever she speaks as them."""

    def __init__(self, *chats: str, identities: tuple[str, ...] = ()) -> None:
        self.chats = set(chats)
        self.identities = set(identities)
        self.asked: list[str] = []

    async def __call__(self, job: Job) -> None:
        self.asked.append(job.conversation.chat_id)
        if job.conversation.chat_id in self.chats or job.identity_key in self.identities:
            raise NotAllowedNow(f"{job.identity_key} may not be answered there now")


async def test_missed_jobs_of_a_person_no_longer_allowed_are_reported_without_a_word(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    """The summary quotes the jobs' texts: a person revoked there is not sent it, and it is
    not kept to be sent once they are allowed again."""
    scheduler = make_scheduler(max_lateness_seconds=60)
    scheduler.may_deliver = revoked = Revoked(DM.chat_id)
    await _remind(scheduler, clock, 60, "my private thing", DM)
    clock.advance(600)
    await scheduler.deliver_due()
    assert revoked.asked == [DM.chat_id] and deliverer.sent == []
    revoked.chats.clear()
    clock.advance(600)
    await scheduler.deliver_due()
    assert deliverer.sent == []  # reported (silently) once


async def test_a_missed_summary_leaves_out_the_jobs_of_an_account_revoked_there(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    """A linked person's jobs in one group, set from two accounts: each job is asked about
    as its own account, so the summary names only the jobs of the one still allowed, and
    the other's are reported without a word."""
    scheduler = make_scheduler(max_lateness_seconds=60)
    scheduler.may_deliver = Revoked(identities=("test:alice-2",))
    await _remind(scheduler, clock, 60, "water the plants", GROUP)
    await _remind(scheduler, clock, 90, "my private thing", GROUP, identity_key="test:alice-2")
    clock.advance(600)
    await scheduler.deliver_due()
    [(where, summary)] = deliverer.sent
    assert where == GROUP
    assert "water the plants" in summary and "my private thing" not in summary
    assert summary.startswith("I could not deliver 1 reminder in time")
    clock.advance(600)
    await scheduler.deliver_due()
    assert len(deliverer.sent) == 1  # both reported, once


async def _pause_in_the_group(
    scheduler: Scheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    """A reminder in the group whose thread is gone: the job is paused, and its notice is
    offered to alice's DM (the one where each test scheduled a job, two hours away, and
    revoked her there), so the scheduler asks there and sends nothing."""
    await _remind(scheduler, clock, 60, "team lunch", GROUP)
    deliverer.refusing[GROUP.chat_id] = "message thread not found"
    clock.advance(60)
    await scheduler.deliver_due()
    [paused] = [j for j in await scheduler.list_jobs("alice") if j.text == "team lunch"]
    assert paused.status is JobStatus.PAUSED


async def test_a_paused_jobs_notice_is_not_sent_where_its_person_is_no_longer_allowed(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    scheduler = make_scheduler()
    scheduler.may_deliver = revoked = Revoked(DM.chat_id)
    await _remind(scheduler, clock, 7200, "later", DM)
    await _pause_in_the_group(scheduler, clock, deliverer)
    assert revoked.asked[-1] == DM.chat_id  # the notice was offered to the DM, and refused
    assert deliverer.sent == []


async def test_a_paused_jobs_notice_asks_as_the_linked_account_that_speaks_where_it_goes(
    make_scheduler: MakeScheduler, clock: FakeClock, deliverer: RecordingDeliverer
) -> None:
    """After a /link, the person's other DMs are other accounts: the notice goes to one only
    while that account (not the paused job's) is allowed there."""
    scheduler = make_scheduler()
    other_dm = Conversation("dc", "alice-dc", DM.kind)
    scheduler.may_deliver = revoked = Revoked(identities=("dc:alice",))
    await _remind(scheduler, clock, 7200, "later", other_dm, identity_key="dc:alice")
    await _pause_in_the_group(scheduler, clock, deliverer)
    assert revoked.asked[-1] == other_dm.chat_id  # offered there, asked as dc:alice: refused
    assert deliverer.sent == []
