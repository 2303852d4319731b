"""A reminder sent while another process holds the database's write lock past the busy
timeout (a CLI command, a backup): the record of its sending waits for the store instead of
being dropped, so the claim's lease does not bring the job back and the person gets it once."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.messages import Conversation
from bot.scheduler import JobKind, JobStatus, Scheduler, SchedulerConfig
from bot.scheduler import delivery as job_delivery
from bot.scheduler.timing import Once
from bot.store import Store
from bot.store import sqlite as store_sqlite
from bot.store.jobs import Job

from .conftest import DM, FakeClock, RecordingDeliverer

_SCHEDULER_LOG = "bot.scheduler.service"


class _FirstRefusal(logging.Handler):
    """Sets `seen` when the scheduler says the store refused the record of a send."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "the store refused its record" in record.getMessage():
            self.seen.set()


class LockedAfterSend(RecordingDeliverer):
    """The platform takes the text; right then another process takes the write lock, and
    lets it go once the record of the send was refused (having run `meanwhile` under it, if
    given)."""

    def __init__(self, store: Store, meanwhile: str | None = None) -> None:
        super().__init__()
        self.store = store
        self.meanwhile = meanwhile
        self.released: asyncio.Task[None] | None = None

    async def deliver(self, conversation: Conversation, text: str) -> str:
        message_id = await super().deliver(conversation, text)
        other = store_sqlite.sqlite_module().connect(str(self.store.path), isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        refused = _FirstRefusal()
        logging.getLogger(_SCHEDULER_LOG).addHandler(refused)
        self.released = asyncio.create_task(self._release_after(refused, other))
        return message_id

    async def _release_after(self, refused: _FirstRefusal, other: Any) -> None:
        try:
            await refused.seen.wait()
            if self.meanwhile is None:
                other.execute("ROLLBACK")
            else:
                other.execute(self.meanwhile)
                other.execute("COMMIT")
        finally:
            logging.getLogger(_SCHEDULER_LOG).removeHandler(refused)
            other.close()


async def _reminder(scheduler: Scheduler, clock: FakeClock) -> Job:
    return await scheduler.schedule(
        person_id="alice", identity_key="test:alice", conversation=DM, text="stretch",
        when=Once(datetime.fromtimestamp(clock.now + 60, UTC)),
        timezone="Europe/Berlin", kind=JobKind.REMINDER,
    )  # fmt: skip


@pytest.fixture
def quick_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_sqlite, "BUSY_TIMEOUT_MS", 200)  # the test waits less
    monkeypatch.setattr(job_delivery, "_COMMIT_RETRY_S", (0.2,))


@pytest.mark.usefixtures("quick_refusals")
async def test_a_reminder_whose_record_the_store_refused_is_not_sent_again(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with Store(tmp_path / "decapod.db") as store:
        deliverer = LockedAfterSend(store)
        config = SchedulerConfig(default_timezone="Europe/Berlin", lease_seconds=30)
        scheduler = Scheduler(store, deliverer, None, config=config, clock=clock)
        job = await _reminder(scheduler, clock)
        clock.advance(60)
        assert await asyncio.wait_for(scheduler.deliver_due(), 30) == 1
        assert deliverer.released is not None
        await asyncio.wait_for(deliverer.released, 30)  # the lock is gone before the next look
        clock.advance(31)  # past the lease of the claim
        await scheduler.deliver_due()
        assert deliverer.texts() == ["⏰ stretch"], "sent again once the lease ran out"
        recorded = await scheduler.jobs.get(job.id)
        assert recorded is not None and recorded.status is JobStatus.SENT, "recorded once unlocked"


@pytest.mark.usefixtures("quick_refusals")
async def test_a_record_tried_again_after_its_claim_ended_is_not_said_a_cancellation(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The refused try landed before its answer was lost (here: the other process stored the
    same record under its lock): the next try finds the claim ended, and says no more than
    that."""
    async with Store(tmp_path / "decapod.db") as store:
        stored = "UPDATE jobs SET status = 'sent', runs = runs + 1"
        deliverer = LockedAfterSend(store, meanwhile=stored)
        config = SchedulerConfig(default_timezone="Europe/Berlin", lease_seconds=30)
        scheduler = Scheduler(store, deliverer, None, config=config, clock=clock)
        job = await _reminder(scheduler, clock)
        clock.advance(60)
        with caplog.at_level(logging.INFO, logger=_SCHEDULER_LOG):
            assert await asyncio.wait_for(scheduler.deliver_due(), 30) == 1
        assert deliverer.released is not None and deliverer.released.done()
        said = [r.getMessage() for r in caplog.records if r.name == _SCHEDULER_LOG]
        assert not [m for m in said if "cancelled?" in m], said
        assert [m for m in said if "claim had ended" in m], said
        recorded = await scheduler.jobs.get(job.id)
        assert recorded is not None and recorded.status is JobStatus.SENT
        assert recorded.runs == 1
        assert deliverer.texts() == ["⏰ stretch"]
