"""The streamed reply's ticker while the model has not answered yet: typing at its interval,
woken by the first text instead of polling for it, a fast answer sent in one message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from bot.messages import Conversation, ConversationKind, OutboundMessage, SentRef
from channels.base import BaseChannel

CHAT = Conversation("ticking", "c1", ConversationKind.DM)


class Ticking(BaseChannel):
    type = "ticking"
    supports_edit = True
    edit_interval = 0.05
    typing_interval = 10.0

    def __init__(self) -> None:
        super().__init__("ticking")
        self.sent: list[str] = []
        self.edits: list[str] = []
        self.typing = 0

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        self.sent.append(text)
        return SentRef(message.conversation, str(len(self.sent)))

    async def _edit_text(self, ref: SentRef, text: str) -> None:
        self.edits.append(text)

    async def _typing(self, conversation: Conversation) -> None:
        self.typing += 1


async def _slow(first_after_s: float, parts: list[str]) -> AsyncIterator[str]:
    await asyncio.sleep(first_after_s)
    for part in parts:
        yield part


class Silent(BaseChannel):
    """A platform without a typing notice (as Slack and the web UI)."""

    type = "silent"

    def __init__(self) -> None:
        super().__init__("silent")
        self.sent: list[str] = []

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        self.sent.append(text)
        return SentRef(message.conversation, str(len(self.sent)))


async def _tasks_made_by(channel: BaseChannel, parts: AsyncIterator[str]) -> list[str]:
    loop = asyncio.get_running_loop()
    made: list[str] = []
    default = loop.get_task_factory()

    def counting(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kw: Any
    ) -> asyncio.Future[Any]:
        made.append(getattr(coro, "__qualname__", "?"))
        if default is not None:
            return default(loop, coro, **kw)  # type: ignore[arg-type]
        return asyncio.Task(coro, loop=loop, **kw)

    loop.set_task_factory(counting)
    try:
        await channel.reply(OutboundMessage(CHAT, ""), parts)
    finally:
        loop.set_task_factory(default)
    return made


async def test_waiting_for_the_first_text_does_not_poll() -> None:
    channel = Ticking()
    made = await _tasks_made_by(channel, _slow(1.2, ["hello ", "there"]))
    # the ticker and one typing request; polling four times a second made a task per poll
    assert len(made) <= 3, made
    assert channel.typing == 1
    assert channel.sent == ["hello there"]


async def test_typing_repeats_at_its_interval_until_the_first_text() -> None:
    channel = Ticking()
    channel.typing_interval = 0.2
    await channel.reply(OutboundMessage(CHAT, ""), _slow(0.9, ["late"]))
    assert 2 <= channel.typing <= 6  # at 0, 0.2, 0.4 ... s: repeated, however busy the loop
    assert channel.sent == ["late"]


async def test_a_fast_answer_goes_out_in_one_message() -> None:
    channel = Ticking()
    await channel.reply(OutboundMessage(CHAT, ""), _slow(0.0, ["Hel", "lo ", "world"]))
    assert channel.sent == ["Hello world"]
    assert channel.edits == []


async def test_a_long_answer_is_shown_while_it_streams() -> None:
    channel = Ticking()

    async def parts() -> AsyncIterator[str]:
        for i in range(12):
            yield f"part{i} "
            await asyncio.sleep(0.05)

    await channel.reply(OutboundMessage(CHAT, ""), parts())
    assert len(channel.sent) == 1
    assert channel.edits, "the message was edited while the answer streamed"
    assert channel.edits[-1].strip() == " ".join(f"part{i}" for i in range(12))


async def test_a_platform_without_typing_gets_no_task_for_it() -> None:
    channel = Silent()
    made = await _tasks_made_by(channel, _slow(0.3, ["hello"]))
    assert made == ["_stream_ticker"], made
    assert channel.sent == ["hello"]


def test_a_class_that_says_whether_it_sends_typing_is_taken_at_its_word() -> None:
    class QuietTicking(Ticking):
        """Its parent's typing notice, turned off here (a setting, not a missing method)."""

        sends_typing = False

    class QuietTickingForATeam(QuietTicking):
        """Derived from a class that turned it off: kept off, not computed again."""

    class LoudAgain(QuietTicking):
        async def _typing(self, conversation: Conversation) -> None:
            return None

    assert (Ticking.sends_typing, Silent.sends_typing) == (True, False)
    assert QuietTicking.sends_typing is False
    assert QuietTickingForATeam.sends_typing is False
    assert LoudAgain.sends_typing is True  # its own notice, below the class that set it
