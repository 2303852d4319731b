"""`gateway.turn_processes`: a reply the platform refuses (the chat is gone) ends the turn in
the turn process as it does in one process: the model is asked nothing more, and no tool of
the answer runs for a conversation nobody can see."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.errors import DeliveryRefused
from bot.gateway import Gateway
from bot.messages import OutboundMessage, SentRef
from bot.providers.base import ToolCall
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
        async with Gateway(_config(make_config, fake), channels={"test": channel}) as gw:
            message = await channel.push("hello", user=user)
            for _ in range(6000):
                found = await gw.store.deliveries.get(("test", message.id))
                if found is not None and found[0] == "failed":
                    break
                await asyncio.sleep(0.01)
            assert found is not None and found[0] == "failed"
            assert found[1] == "chat not found"
            await asyncio.sleep(0.5)  # a second model call would be under way by now
        assert len(fake.calls(path="/v1/chat/completions")) == 1, "asked again after a refusal"
        assert channel.texts(user) == []
