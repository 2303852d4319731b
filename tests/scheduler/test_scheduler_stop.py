"""Stopping the scheduler: deliveries under way end with it, even when the stop is cancelled."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from bot.messages import Conversation
from bot.scheduler import Scheduler, SchedulerConfig
from bot.scheduler.timing import Once
from bot.store import Store
from tests.scheduler.conftest import DM, RecordingDeliverer


class HangingDeliverer(RecordingDeliverer):
    """A platform that never answers: each send waits until it is cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.sending = asyncio.Event()
        self.sends: list[asyncio.Task[object]] = []

    async def deliver(self, conversation: Conversation, text: str) -> str:
        task = asyncio.current_task()
        assert task is not None
        self.sends.append(task)
        self.sending.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_cancelled_stop_still_ends_the_deliveries_under_way(store: Store) -> None:
    """A stop cancelled during its grace (a shutdown that ran out of time) raises the
    cancellation, and no delivery goes on sending after it."""
    deliverer = HangingDeliverer()
    scheduler = Scheduler(store, deliverer, config=SchedulerConfig(poll_seconds=3600))
    await scheduler.schedule(
        person_id="alice", identity_key="test:alice", conversation=DM, text="stretch",
        when=Once(datetime.fromtimestamp(time.time() + 0.1, UTC)), timezone="UTC",
    )  # fmt: skip
    await scheduler.start()
    async with asyncio.timeout(30):
        await deliverer.sending.wait()
    stopping = asyncio.create_task(scheduler.stop(grace=3600))
    await asyncio.sleep(0.05)  # stop() is in its grace, waiting for the send
    assert not stopping.done()
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert all(send.done() for send in deliverer.sends)
