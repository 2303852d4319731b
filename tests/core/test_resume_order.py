"""After a restart, the deliveries left unfinished run before what people send while they are
being resumed: a chat's answers keep the order of its messages; an arrival meanwhile that
cannot be taken in (its refusal cannot be said) stops neither the start nor the others."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.delivery import Deliveries
from bot.errors import DeliveryRefused
from bot.gateway import Gateway
from bot.messages import OutboundMessage, SentRef
from bot.providers.base import ChatRequest
from bot.providers.testing import FunctionProvider
from bot.store.config import open_store
from bot.store.deliveries import OpenDelivery
from tests.fakes.channel import RecordingChannel

#: people with a message left unfinished by the last run, resumed before the one who writes
OTHERS = 5
#: someone not paired, who blocked the bot: the pairing code sent to them is refused
STRANGER = "u-stranger"


class BlockedByStranger(RecordingChannel):
    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        if message.conversation.chat_id == STRANGER:
            raise DeliveryRefused("blocked", "the bot was blocked by the user")
        return await super()._send_text(message, text)


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


class HeldResume:
    """The start's first resumed delivery waits until the test has pushed what arrives
    during the resume."""

    def __init__(self, deliveries: Deliveries) -> None:
        self.resuming = asyncio.Event()
        self.pushed = asyncio.Event()
        self._resume = deliveries.resume
        deliveries.resume = self  # type: ignore[method-assign]

    async def __call__(self, delivery: OpenDelivery) -> None:
        if not self.resuming.is_set():
            self.resuming.set()
            await asyncio.wait_for(self.pushed.wait(), 20)
        await self._resume(delivery)


async def test_messages_arriving_during_the_resume_are_answered_after_the_unfinished_ones(
    make_config: Any,
) -> None:
    config = make_config(
        gateway={"owners": ["test:boss"]},
        channels={"test": {"type": "telegram", "access": {"dm_policy": "pairing"}}},
    )
    channel = BlockedByStranger(console=False)
    await _left_unfinished(config, channel)

    def answer(request: ChatRequest) -> str:
        return f"answer to {request.messages[-1].content}"

    gateway = Gateway(config, provider=FunctionProvider(answer), channels={"test": channel})
    held = HeldResume(gateway.deliveries)
    starting = asyncio.create_task(gateway.start())
    try:
        await asyncio.wait_for(held.resuming.wait(), 30)  # the resume is under way
        stranger = await channel.push("hello", user=STRANGER, delivery_id="stranger")
        await channel.push("after the restart", user="u-last", delivery_id="live")
        held.pushed.set()
        await asyncio.wait_for(starting, 30)
        await channel.wait_for_messages(OTHERS + 2, timeout=60)
        await gateway.sessions.wait_idle()
        assert channel.texts("u-last") == [
            "answer to before from u-last",
            "answer to after the restart",
        ]
        assert channel.texts(STRANGER) == []
        assert await gateway.store.inbound.status("test", stranger.id) == "denied"
    finally:
        if not starting.done():
            starting.cancel()
        await gateway.stop()
