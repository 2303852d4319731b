"""A reminder sent while another process holds the database's write lock past the busy
timeout (a CLI command, a backup): the record of its sending waits for the store instead of
being dropped, so the claim's lease does not bring the job back and the person gets it once."""

from __future__ import annotations

import asyncio
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

from .conftest import DM, FakeClock, RecordingDeliverer


class LockedAfterSend(RecordingDeliverer):
    """The platform takes the text; right then another process takes the write lock, and
    lets it go a moment later."""

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.holders: list[Any] = []
        self.released: asyncio.Task[None] | None = None

    async def deliver(self, conversation: Conversation, text: str) -> str:
        message_id = await super().deliver(conversation, text)
        other = store_sqlite.sqlite_module().connect(str(self.store.path), isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        self.holders.append(other)
        self.released = asyncio.create_task(self._release_later(other))
        return message_id

    async def _release_later(self, other: Any) -> None:
        await asyncio.sleep(1.0)  # the record of the send was refused by now
        other.execute("ROLLBACK")


async def test_a_reminder_whose_record_the_store_refused_is_not_sent_again(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_sqlite, "BUSY_TIMEOUT_MS", 200)  # the test waits less
    monkeypatch.setattr(job_delivery, "_COMMIT_RETRY_S", (0.2,))
    async with Store(tmp_path / "decapod.db") as store:
        deliverer = LockedAfterSend(store)
        config = SchedulerConfig(default_timezone="Europe/Berlin", lease_seconds=30)
        scheduler = Scheduler(store, deliverer, None, config=config, clock=clock)
        try:
            job = await scheduler.schedule(
                person_id="alice", identity_key="test:alice", conversation=DM, text="stretch",
                when=Once(datetime.fromtimestamp(clock.now + 60, UTC)),
                timezone="Europe/Berlin", kind=JobKind.REMINDER,
            )  # fmt: skip
            clock.advance(60)
            assert await asyncio.wait_for(scheduler.deliver_due(), 30) == 1
            clock.advance(31)  # past the lease of the claim
            await scheduler.deliver_due()
            assert deliverer.texts() == ["⏰ stretch"], "sent again once the lease ran out"
            recorded = await scheduler.jobs.get(job.id)
            assert recorded is not None and recorded.status is JobStatus.SENT, (
                "recorded once unlocked"
            )
        finally:
            for other in deliverer.holders:
                other.close()
