"""How many deliveries run at once: a backlog drains within the limit, and so does the
catch-up after a long downtime."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from bot.messages import Conversation
from bot.scheduler import Scheduler
from bot.scheduler.timing import Cron, Once
from bot.store import Store

from .conftest import FakeClock, MakeScheduler, RecordingDeliverer, remind


class SlowDeliverer(RecordingDeliverer):
    """Each send takes a while; records how many were under way at once at most."""

    in_flight = 0
    most = 0

    async def deliver(self, conversation: Conversation, text: str) -> str:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0.05)
        self.in_flight -= 1
        return await super().deliver(conversation, text)


async def wait_for_sends(deliverer: RecordingDeliverer, count: int) -> None:
    start = time.time()
    while len(deliverer.sent) < count and time.time() - start < 20:
        await asyncio.sleep(0.02)


async def test_concurrent_deliveries_are_bounded_and_the_backlog_drains(store: Store) -> None:
    from bot.scheduler import SchedulerConfig

    deliverer = SlowDeliverer()
    config = SchedulerConfig(max_concurrent_deliveries=2, poll_seconds=30)
    scheduler = Scheduler(store, deliverer, config=config)
    due = Once(datetime.fromtimestamp(time.time() + 0.2, UTC))
    for i in range(10):
        await remind(scheduler, due, f"r{i}", person=f"p{i}")
    await scheduler.start()
    try:
        start = time.time()
        await wait_for_sends(deliverer, 10)
        assert sorted(deliverer.texts()) == sorted(f"⏰ r{i}" for i in range(10))
        assert deliverer.most == 2
        assert time.time() - start < 20  # well before the 30 s poll; loose for a busy machine
    finally:
        await scheduler.stop()


async def test_the_catch_up_after_long_downtime_keeps_the_concurrency_limit(
    make_scheduler: MakeScheduler, clock: FakeClock
) -> None:
    """Repeating jobs last due before the lateness limit are all claimed at once after a
    long downtime; those catching up on a recent occurrence are still sent a few at a time
    (a check-in or task each runs a model turn), each once."""
    scheduler = make_scheduler(max_concurrent_deliveries=3, poll_seconds=30)
    deliverer = scheduler.deliverer = SlowDeliverer()
    for i in range(12):
        await remind(scheduler, Cron("0 18 * * *"), f"r{i}", person=f"p{i}")
    clock.advance(2 * 86_400 + 5400)  # down for two days; today's 18:00 was half an hour ago
    await scheduler.start()
    try:
        await wait_for_sends(deliverer, 12)
        await asyncio.sleep(0.2)  # room for a duplicate to show
    finally:
        await scheduler.stop()
    assert sorted(t.split("\n")[0] for t in deliverer.texts()) == sorted(
        f"⏰ r{i}" for i in range(12)
    )
    assert all("late by 30m" in text for text in deliverer.texts())
    assert deliverer.most == 3
