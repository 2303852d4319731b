"""A turn on a replica that fails in a way no layer below planned for (a provider plugin's
bug): the person is told once, as on one process, and the session's next messages are still
answered; the failed delivery is not run again by this replica's next message or sweep."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.providers.base import ChatRequest
from bot.providers.testing import FunctionProvider
from tests.cluster.harness import until
from tests.fakes.channel import RecordingChannel

pytestmark = pytest.mark.replicas

FAILED = "Something went wrong on my side. Please try again."


async def test_a_turn_failing_unplanned_is_told_once_and_the_session_goes_on(
    make_config: Any, pg_url: str
) -> None:
    asked: list[str] = []

    def answer(request: ChatRequest) -> str:
        text = str(request.messages[-1].content)
        asked.append(text)
        if text == "first":
            raise RuntimeError("a provider plugin's bug")
        return f"answer to {text}"

    config = make_config(
        store={"url": pg_url},
        gateway={"session_lease_s": 1},  # a sweep every second
        scheduler={"poll_seconds": 3600},
        memory={"enabled": False},
    )
    channel = RecordingChannel(console=True)
    async with Gateway(config, provider=FunctionProvider(answer), channels={"test": channel}) as gw:
        first = await channel.push("first", delivery_id="f1")
        await channel.wait_for_messages(1, timeout=20)
        await channel.push("second", delivery_id="f2")
        await channel.wait_for_messages(2, timeout=20)
        await until(lambda: gw.sessions.active == 0 and not gw.sessions.queue_depth)
        await asyncio.sleep(3.5)  # three sweeps: the failed one is not run again
        await until(lambda: gw.sessions.active == 0 and not gw.sessions.queue_depth)
        assert await gw.store.inbound.status("test", "f2") == "done"
        # as on one process: left pending, for the next start
        assert await gw.store.inbound.status("test", first.id) == "pending"
    assert channel.texts() == [FAILED, "answer to second"]
    assert asked == ["first", "second"]
