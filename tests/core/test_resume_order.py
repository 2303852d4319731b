"""After a restart, the deliveries left unfinished run before what people send while they are
being resumed: a chat's answers keep the order of its messages."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.gateway import Gateway
from bot.providers.base import ChatRequest
from bot.providers.testing import FunctionProvider
from bot.store.config import open_store
from tests.fakes.channel import RecordingChannel

#: people with a message left unfinished by the last run, resumed before the one who writes
OTHERS = 60


async def _left_unfinished(config: Any, channel: RecordingChannel) -> None:
    """Paired people, each with a delivery stored and never answered (the process died); the
    last one, u-last, is the one who writes again during the resume."""
    users = [f"u{n}" for n in range(OTHERS)] + ["u-last"]

    def pair(conn: Any) -> None:
        for user in users:
            conn.execute(
                "INSERT INTO paired VALUES (?, ?, ?, ?, ?)",
                ("test", user, user, time.time(), "test:boss"),
            )

    async with open_store(config.store, config.home) as store:
        await store.write(pair)
        for user in users:
            assert await store.inbound.insert(channel.inbound(f"before from {user}", user=user))


async def test_messages_arriving_during_the_resume_are_answered_after_the_unfinished_ones(
    make_config: Any,
) -> None:
    config = make_config(
        gateway={"owners": ["test:boss"]},
        channels={"test": {"type": "telegram", "access": {"dm_policy": "pairing"}}},
    )
    channel = RecordingChannel(console=False)
    await _left_unfinished(config, channel)

    def answer(request: ChatRequest) -> str:
        return f"answer to {request.messages[-1].content}"

    gateway = Gateway(config, provider=FunctionProvider(answer), channels={"test": channel})
    starting = asyncio.create_task(gateway.start())
    try:
        # the resume is under way: from here a new message is taken live
        while not gateway.router.accepting:
            await asyncio.sleep(0)
        await channel.push("after the restart", user="u-last", delivery_id="live")
        await starting
        await channel.wait_for_messages(OTHERS + 2, timeout=60)
        await gateway.sessions.wait_idle()
        assert channel.texts("u-last") == [
            "answer to before from u-last",
            "answer to after the restart",
        ]
    finally:
        if not starting.done():
            starting.cancel()
        await gateway.stop()
