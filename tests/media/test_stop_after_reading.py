"""/stop that lands once a message's attachments are read, before the turn goes on to its
answer: the reading has nothing left for the stop to end, and the turn still stops."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from bot.media.intake import Intake
from bot.messages import Attachment
from tests.fakes.llm import FakeLLM
from tests.media.conftest import running, settled


async def test_a_stop_after_the_attachments_were_read_still_stops_the_turn(
    make_config: Any, fake: FakeLLM
) -> None:
    fake.push("Milk and bread.")
    body = b"milk\nbread\n"
    part = Attachment("document", "doc-1", "list.txt", "text/plain", len(body))
    async with running(make_config, fake, models={"chat": ["oa:gpt-4o"]}) as (gw, channel):
        assert gw.media is not None
        read = gw.media.take

        async def read_then_wait_for_the_stop(*args: Any) -> Intake:
            intake = await read(*args)
            # the reading is over: the turn is held here until /stop was answered, and the
            # stop's cancel, arriving now, has nothing left to end (as on a finished task)
            deadline = time.monotonic() + 20
            while "Stopping it." not in channel.texts() and time.monotonic() < deadline:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0.01)
            return intake

        gw.media.take = read_then_wait_for_the_stop  # type: ignore[method-assign]
        message = await channel.push("what is on it?", parts=(part,))
        async with asyncio.timeout(20):
            while not channel.fetched:
                await asyncio.sleep(0.01)
        await channel.push("/stop")
        assert await settled(gw, delivery=message.id) == "done"
        await channel.wait_for_messages(2)
    assert channel.texts() == ["Stopping it.", "Stopped."]
    assert fake.calls(path="/v1/chat/completions") == []


async def test_a_stop_while_a_note_before_the_answer_is_sent_stops_the_turn(
    make_config: Any, fake: FakeLLM
) -> None:
    """Between the reading and the answer the turn says what it could not read; a /stop
    then finds the turn still running, and the answer that follows is the stop's note."""
    fake.push("Hello there.")
    part = Attachment("document", "zip", "backup.zip", "application/zip", 300)
    problem = "I can't open backup.zip"
    async with running(make_config, fake, models={"chat": ["oa:gpt-4o"]}) as (gw, channel):
        channel.files[part.ref] = b"PK\x03\x04" + b"\x00" * 296
        say = gw.say

        async def say_the_note_then_wait_for_the_stop(message: Any, text: Any) -> None:
            await say(message, text)
            if isinstance(text, str) and text.startswith(problem):
                async with asyncio.timeout(20):
                    while "Stopping it." not in channel.texts():
                        await asyncio.sleep(0.01)

        gw.say = say_the_note_then_wait_for_the_stop  # type: ignore[method-assign]
        message = await channel.push("hi, see attached", parts=(part,))
        await channel.wait_for_messages(1)
        await channel.push("/stop")
        assert await settled(gw, delivery=message.id) == "done"
        texts = await channel.wait_for_messages(3)
    assert texts[0].startswith(problem) and texts[1:] == ["Stopping it.", "Stopped."]
    assert fake.calls(path="/v1/chat/completions") == []
