"""`gateway.turn_processes`: a reply the platform refuses (the chat is gone) ends the turn in
the turn process as it does in one process: the model is asked nothing more, and no tool of
the answer runs for a conversation nobody can see."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.errors import ChannelError, DeliveryRefused, SendSmaller, StorageUnavailable
from bot.gateway import Gateway
from bot.messages import Conversation, OutboundMessage, SentRef
from bot.providers.base import ToolCall
from bot.scaleout.child import Link, RemoteChannel, _read
from bot.scaleout.pool import owner_of
from bot.scaleout.wire import ChannelShape, Wire
from tests.core.test_turn_processes import _config, _users_on_each_process
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, RecordedRequest, Reply


@pytest.fixture(autouse=True)
def _fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")


class GoneChat(RecordingChannel):
    """Every send to `gone` is refused, as a platform refuses a deleted chat."""

    gone = ""

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        if message.conversation.chat_id == self.gone:
            raise DeliveryRefused("chat not found")
        return await super()._send_text(message, text)


async def test_a_refused_reply_stops_the_turn_in_its_turn_process(make_config: Any) -> None:
    # a long answer, streamed slowly, then a tool call: the refusal of its first message
    # comes back long before the answer's end
    words = " ".join(f"word{i}" for i in range(150))

    def reply(recorded: RecordedRequest) -> Reply:
        call = ToolCall("t1", "no_such_tool", "{}")
        return Reply(text=words, tool_calls=[call], chunk_delay_s=0.05)

    async with FakeLLM() as fake:
        fake.reply_fn = reply
        channel = GoneChat(console=True)
        channel.gone = user = _users_on_each_process(2)[0]
        config = _config(make_config, fake)
        config = config.model_copy(
            update={"gateway": config.gateway.model_copy(update={"owners": ["test:boss"]})}
        )
        async with Gateway(config, channels={"test": channel}) as gw:
            message = await channel.push("hello", user=user)
            # the owner's notice is the turn's last act: a second model call would come
            # before it (the wait ends at that call, not at the bound)
            for _ in range(6000):
                if channel.texts("boss") or len(fake.calls(path="/v1/chat/completions")) > 1:
                    break
                await asyncio.sleep(0.01)
            assert len(fake.calls(path="/v1/chat/completions")) == 1, "asked again after a refusal"
            (notice,) = channel.texts("boss")
            assert "gave up: chat not found" in notice
            found = await gw.store.deliveries.get(("test", message.id))
            assert found is not None and found[0] == "failed"
            assert found[1] == "chat not found"
        assert channel.texts(user) == []


async def _link_to_a_receiver() -> tuple[Link, RemoteChannel, Wire]:
    """A turn process's link to a receiver on the other end of a socket pair."""
    mine, theirs = socket.socketpair()
    wire = Wire(*await asyncio.open_unix_connection(sock=mine))
    receiver = Wire(*await asyncio.open_unix_connection(sock=theirs))
    link = Link(wire)
    shape = ChannelShape("test", 4096, 1 << 20, False, None)
    return link, RemoteChannel(shape, link), receiver


async def _reply_while(link: Link, channel: RemoteChannel, settle: Any) -> tuple[int, Any]:
    """A reply of five parts; `settle` runs on the link after the first: how many parts the
    model was asked for, and how the reply ended."""
    asked = 0

    async def deltas() -> AsyncIterator[str]:
        nonlocal asked
        for part in ("a", "b", "c", "d", "e"):
            asked += 1
            yield part
            if asked == 1:
                settle()

    template = OutboundMessage(Conversation("test", "c1"), "")
    try:
        return asked, await channel.reply(template, deltas())
    except ChannelError as exc:
        return asked, exc


async def test_a_lost_receiver_lets_the_turn_finish_its_answer_for_the_next_start() -> None:
    link, channel, receiver = await _link_to_a_receiver()
    asked, ended = await _reply_while(link, channel, link.lost)
    assert asked == 5, "the model's answer is read to its end, to be stored"
    assert isinstance(ended, ChannelError) and not isinstance(ended, DeliveryRefused)
    link.wire.close()
    receiver.close()


async def test_a_refusal_stops_reading_the_answer_at_its_next_part() -> None:
    link, channel, receiver = await _link_to_a_receiver()
    refused = (False, DeliveryRefused("chat not found"))
    asked, ended = await _reply_while(link, channel, lambda: link.settle(1, refused))
    assert asked == 2, "the part after the refusal is the last one asked for"
    assert isinstance(ended, DeliveryRefused)
    link.wire.close()
    receiver.close()


class TooLongChat(RecordingChannel):
    """Every send to `refusing` is too long, even in the smallest pieces (as Telegram counts
    a text after its own parsing)."""

    refusing = ""

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        if message.conversation.chat_id == self.refusing:
            raise SendSmaller(1, "message is too long")
        return await super()._send_text(message, text)


async def test_a_reply_refused_as_too_long_is_given_up_not_left_waiting(make_config: Any) -> None:
    async with FakeLLM() as fake:
        fake.reply_fn = lambda recorded: Reply(text="a short answer")
        channel = TooLongChat(console=True)
        refused = channel.refusing = _users_on_each_process(2)[0]
        same_process = next(
            f"u{n}"
            for n in range(100)
            if f"u{n}" != refused
            and owner_of(f"test:dm:u{n}", 2) == owner_of(f"test:dm:{refused}", 2)
        )
        config = _config(make_config, fake)
        config = config.model_copy(
            update={"gateway": config.gateway.model_copy(update={"owners": ["test:boss"]})}
        )
        async with Gateway(config, channels={"test": channel}) as gw:
            message = await channel.push("hello", user=refused)
            for _ in range(3000):
                if channel.texts("boss"):
                    break
                await asyncio.sleep(0.01)
            (notice,) = channel.texts("boss")
            assert "gave up: message is too long" in notice
            found = await gw.store.deliveries.get(("test", message.id))
            assert found is not None and found[:2] == ("failed", "message is too long")
            # the same turn process still takes turns
            await channel.push("hello again", user=same_process)
            for _ in range(3000):
                if channel.texts(same_process):
                    break
                await asyncio.sleep(0.01)
            assert channel.texts(same_process) == ["a short answer"]


async def test_a_frame_that_cannot_be_read_ends_the_calls_waiting_on_the_link() -> None:
    link, _channel, receiver = await _link_to_a_receiver()
    stopping = asyncio.Event()
    reading = asyncio.create_task(_read(link.wire, link, None, stopping))
    call_id, call = link.open()
    # a result whose error does not unpickle
    receiver.send("result", call_id, (False, Unpicklable()))
    with pytest.raises(ChannelError, match="the receiver is gone"):
        await asyncio.wait_for(link.result(call_id, call), 10)
    await asyncio.wait_for(stopping.wait(), 10)
    await reading
    link.wire.close()
    receiver.close()


class Unpicklable(Exception):
    """An error whose pickled form raises as it is loaded."""

    def __reduce__(self) -> Any:
        return (_refuse_to_load, ())


def _refuse_to_load() -> None:
    raise TypeError("cannot be read back")


async def test_a_stored_message_that_cannot_be_taken_in_leaves_the_link_serving() -> None:
    link, _channel, receiver = await _link_to_a_receiver()
    stopping = asyncio.Event()
    reading = asyncio.create_task(_read(link.wire, link, _RefusingGateway(), stopping))
    call_id, call = link.open()
    receiver.send("accept", 0, {"id": "m1"})  # the store refuses it for a moment
    receiver.send("result", call_id, (True, "sent"))
    assert await asyncio.wait_for(link.result(call_id, call), 10) == "sent"
    assert not stopping.is_set()
    receiver.send("stop", 0, None)
    await asyncio.wait_for(stopping.wait(), 10)
    receiver.close()
    await asyncio.wait_for(reading, 10)
    link.wire.close()


class _RefusingGateway:
    async def accept_stored(self, payload: Any) -> None:
        raise StorageUnavailable("busy", "postgresql")
