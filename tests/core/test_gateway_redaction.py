"""A registered secret that the model writes (in its text or in a tool call's arguments) or
that a tool returns is kept out of the store and out of every later request, which after a
failover may go to another provider. The tool here redacts nothing itself: the agent must."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.builtin import builtin_tools
from bot.gateway import Gateway
from bot.providers.base import ChatRequest, TextDelta, ToolCall, ToolCallEvent
from bot.providers.testing import ScriptedProvider
from bot.store import sqlite
from bot.tools import ToolContext, ToolRegistry, tool
from tests.fakes.channel import RecordingChannel

SECRET = "Decapod-test-secret-7f3Kq9ZpX2"


@tool
async def note(ctx: ToolContext, text: str) -> str:
    """Take a note."""
    return f"noted: {text}"


def _text_then_call(request: ChatRequest) -> Any:
    async def events() -> Any:
        yield TextDelta(f"Your key is {SECRET}. ")
        yield ToolCallEvent(ToolCall("n1", "note", json.dumps({"text": f"key={SECRET}"})))

    return events()


async def test_secrets_the_model_writes_are_not_stored_or_sent_again(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DECAPOD_TEST_MODEL_SECRET", SECRET)
    config = make_config(security={"secret_env": ["DECAPOD_TEST_MODEL_SECRET"]})
    provider = ScriptedProvider([_text_then_call, f"I noted {SECRET}.", "Nothing more."])
    channel = RecordingChannel(console=True)
    tools = ToolRegistry([*builtin_tools(), note])
    async with Gateway(config, provider=provider, channels={"test": channel}, tools=tools):
        await channel.push("what is my key?")
        await channel.wait_for_messages(1)
        await channel.push("anything else?")
        await channel.wait_for_messages(2)
    conn = sqlite.connect(config.db_path)
    rows = conn.execute("SELECT role, content, tool_calls FROM turns ORDER BY id").fetchall()
    conn.close()

    roles = [r[0] for r in rows]
    assert roles == ["user", "assistant", "tool", "assistant", "user", "assistant"]
    assert SECRET not in json.dumps(rows)
    _, said, calls = rows[1]
    assert said == "Your key is [REDACTED:known_secret]. "
    assert json.loads(json.loads(calls)[0]["arguments"]) == {"text": "key=[REDACTED:known_secret]"}
    assert rows[2][1] == "noted: key=[REDACTED:known_secret]"
    after_tool, next_turn = provider.requests[1], provider.requests[2]
    assert len(next_turn.messages) == 5  # the first turn's transcript is sent again
    for request in (after_tool, next_turn):
        assert SECRET not in repr(request.messages)
    assert all(SECRET not in text for text in channel.texts())


async def test_a_notice_to_the_owner_never_carries_a_secret(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Owner notices quote errors (a provider's, a hook's) and leave through a chat
    platform: whatever sends one, the secrets in it are redacted on the way out."""
    monkeypatch.setenv("DECAPOD_TEST_MODEL_SECRET", SECRET)
    config = make_config(
        security={"secret_env": ["DECAPOD_TEST_MODEL_SECRET"]}, gateway={"owners": ["test:u1"]}
    )
    channel = RecordingChannel()
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": channel}) as gw:
        await gw.notify_owner(f"the hook failed: invalid token {SECRET}")
    [notice] = channel.texts("u1")
    assert SECRET not in notice and "the hook failed" in notice
