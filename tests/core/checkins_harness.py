"""What the check-in tests share: a Telegram-typed channel open to all, a Monday 07:00 UTC
to start the clock at, and asking tg:u1's check-in of a running gateway."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from bot.gateway import Gateway
from bot.store.jobs import Job, JobKind
from tests.fakes.channel import RecordingChannel

START = dt.datetime(2030, 1, 7, 7, 0, tzinfo=dt.UTC).timestamp()  # a Monday, 07:00 UTC
CHANNELS: dict[str, Any] = {
    "tg": {
        "type": "telegram",
        "access": {"dm_policy": "open", "groups": {"*": {"require_mention": False}}},
    }
}


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def ask(channel: RecordingChannel, text: str, **kwargs: Any) -> str:
    before = len(channel.texts())
    await channel.push(text, **kwargs)
    return (await channel.wait_for_messages(before + 1))[before]


async def checkin_job(gw: Gateway) -> Job:
    await gw.warmup.wait()  # the scheduler is a warm-up step
    assert gw.deps.scheduler is not None
    jobs = await gw.deps.scheduler.jobs.listing(include_closed=False, person_id="tg:u1")
    [job] = [j for j in jobs if j.kind is JobKind.CHECKIN]
    return job
