"""An answer the model could not finish within its output limit: the person is told it was
cut off, instead of seeing half an answer as if it were whole, or "(no answer)" when the cut
fell inside a tool call. The real provider against the fake model server."""

from __future__ import annotations

from typing import Any

import pytest

from bot.gateway import Gateway
from bot.providers.base import ToolCall
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, Reply

CUT_NOTE = "(My answer reached the output limit and was cut off here.)"


@pytest.fixture(autouse=True)
def _fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")


def _config(make_config: Any, fake: FakeLLM) -> Any:
    return make_config(
        providers={"fake": fake.provider(context_window=8000)},
        models={"chat": ["fake:test-model"]},
    )


@pytest.mark.parametrize(
    "reply",
    [
        Reply("Here are the first three steps: one, two", finish_reason="length"),
        Reply(
            tool_calls=[ToolCall("c1", "exec", '{"command": "ls -la /wo')],
            finish_reason="length",
        ),
    ],
    ids=["text", "inside a tool call"],
)
async def test_an_answer_cut_by_the_output_limit_says_so(make_config: Any, reply: Reply) -> None:
    async with FakeLLM() as fake:
        fake.push(reply)
        channel = RecordingChannel(console=True)
        async with Gateway(_config(make_config, fake), channels={"test": channel}):
            await channel.push("list the steps")
            [answer] = await channel.wait_for_messages(1, timeout=20)
    assert answer.endswith(CUT_NOTE)
    assert answer.startswith(reply.text or CUT_NOTE)
    assert "(no answer)" not in answer
