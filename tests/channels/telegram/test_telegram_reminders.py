"""A reminder whose chat Telegram refuses for good: set in a forum topic that is then
deleted, it is paused with Telegram's reason, never sent again, and the person hears of it
in their direct chat."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bot.gateway import Gateway
from bot.providers.testing import ScriptedProvider
from bot.scheduler import Job, JobStatus
from tests.channels.telegram.conftest import ALICE, GROUP, settled, until
from tests.fakes.telegram import FakeTelegram

TOPIC = 77


async def test_a_reminder_in_a_deleted_forum_topic_is_paused_with_telegrams_reason(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    config = tg_config(access={"groups": {str(GROUP): {"require_mention": False}}})
    async with Gateway(config, provider=ScriptedProvider([])) as gw:
        await gw.warmup.wait()  # the scheduler is a warm-up step
        scheduler = gw.deps.scheduler
        assert scheduler is not None
        fake.push_private("/remind in 2h water the plants", user_id=ALICE)
        await until(lambda: len(fake.texts(ALICE)) == 1)
        # The topic is gone before anything is sent there, so the confirmation is refused
        # too (and the owner told): nothing here depends on how soon the reminder is due.
        fake.refuse(GROUP, 400, "Bad Request: message thread not found", thread_id=TOPIC)
        fake.push_group("/remind in 1s stand up", chat_id=GROUP, thread_id=TOPIC)
        paused: list[Job] = []
        async with asyncio.timeout(15):
            while not paused:
                await asyncio.sleep(0.05)
                jobs = await scheduler.jobs.listing(include_closed=True)
                paused = [job for job in jobs if job.status is JobStatus.PAUSED]
            await until(lambda: any("stand up" in text for text in fake.texts(ALICE)))
        await settled(gw)
    [job] = paused
    assert job.text == "stand up"
    assert job.last_error == "DeliveryRefused: message thread not found"
    [notice] = [text for text in fake.texts(ALICE) if "stand up" in text]
    assert "message thread not found" in notice and f"/reminders cancel {job.id}" in notice
    to_topic = fake.calls_of("sendMessage", chat_id=GROUP, message_thread_id=TOPIC)
    # the confirmation, then the reminder: each refused once, neither tried again
    assert [call.status for call in to_topic] == [400, 400]


async def test_a_command_with_a_newline_after_its_name_is_read_as_the_command(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    """Phones put a newline, not a space, after a command picked from the menu; the command
    still runs (and the model is never asked)."""
    provider = ScriptedProvider([])
    async with Gateway(tg_config(), provider=provider) as gw:
        await gw.warmup.wait()  # the scheduler is a warm-up step
        scheduler = gw.deps.scheduler
        assert scheduler is not None
        fake.push_private("/remind\nin 2h water the plants", user_id=ALICE)
        fake.push_private("/remind@" + fake.username + "\nin 3h stretch", user_id=ALICE)
        await until(lambda: len(fake.texts(ALICE)) == 2)
        await settled(gw)
        jobs = await scheduler.jobs.listing(include_closed=False)
    assert sorted(job.text for job in jobs) == ["stretch", "water the plants"]
    assert provider.requests == []
