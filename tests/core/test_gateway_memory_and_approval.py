"""Memory recalled across sessions for the same person only; the owner's approval of a
dangerous command given from the chat while the turn waits."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.messages import ConversationKind
from bot.providers.base import ChatRequest, ToolCall
from bot.providers.testing import FunctionProvider
from tests.fakes.channel import RecordingChannel


async def test_a_fact_is_recalled_in_a_new_session_and_never_for_another_person(
    make_config: Any,
) -> None:
    seen: list[ChatRequest] = []

    async def model(request: ChatRequest) -> Any:
        seen.append(request)
        last = request.messages[-1]
        if last.role == "user" and "sister" in last.content and "name is" in last.content:
            return [
                ToolCall(
                    "m1", "memory_save", json.dumps({"text": "The person's sister is called Ana."})
                )
            ]
        return "noted"

    channel = RecordingChannel(console=False)
    config = make_config(
        channels={
            "test": {
                "type": "telegram",
                "access": {"dm_policy": "open", "groups": {"*": {"require_mention": False}}},
            }
        }
    )
    async with Gateway(config, provider=FunctionProvider(model), channels={"test": channel}):
        await channel.push("my sister's name is Ana", user="alice")
        await channel.wait_for_messages(1, chat_id="alice")
        await channel.push("/new", user="alice")
        await channel.push("what is my sister called?", user="alice")
        await channel.wait_for_messages(3, chat_id="alice")
        await channel.push("what is my sister called?", user="bob")
        await channel.wait_for_messages(1, chat_id="bob")
        await channel.push(
            "what is my sister called?", user="bob", chat="g", kind=ConversationKind.GROUP
        )
        await channel.wait_for_messages(1, chat_id="g")
    by_question = [r for r in seen if r.messages[-1].content == "what is my sister called?"]
    alice, bob_dm, bob_group = by_question
    assert "Ana" in alice.system
    assert [m.content for m in alice.messages] == ["what is my sister called?"], "a new session"
    assert "Ana" not in bob_dm.system and "Ana" not in bob_group.system


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
@pytest.mark.parametrize("decision", ["approve", "deny"])
async def test_owner_approves_or_denies_a_dangerous_command_from_the_chat(
    make_config: Any, decision: str
) -> None:
    async def model(request: ChatRequest) -> Any:
        last = request.messages[-1]
        if last.role == "user":
            return [
                ToolCall(
                    "x1", "exec", json.dumps({"command": "mkdir -p d && rm -rf d && echo cleaned"})
                )
            ]
        return "result: " + last.content

    channel = RecordingChannel(console=True)
    config = make_config(sandbox={"backend": "bwrap", "approval": "ask"})
    async with Gateway(config, provider=FunctionProvider(model), channels={"test": channel}):
        await channel.push("clean up the folder", user="owner")
        [ask] = await channel.wait_for_messages(1, timeout=10)
        approval_id = re.search(rf"/{decision} (\w+)", ask).group(1)  # type: ignore[union-attr]
        await channel.push(f"/{decision} {approval_id}", user="owner")
        await channel.wait_for_messages(3, timeout=20)
    # read once the gateway stopped: under load the first sight of a streamed answer can be
    # a part of it
    texts = channel.texts()
    assert "Approval needed" in ask and "recursive or forced delete" in ask
    assert texts[1] == ("Approved." if decision == "approve" else "Denied.")
    if decision == "approve":
        assert "cleaned" in texts[2]
    else:
        assert "cleaned" not in texts[2] and "denied" in texts[2]


def _cleanup_model(thinking_s: float = 0.0) -> FunctionProvider:
    """A model that asks for a dangerous command (after `thinking_s`), then repeats its
    result."""

    async def model(request: ChatRequest) -> Any:
        last = request.messages[-1]
        if last.role == "user":
            await asyncio.sleep(thinking_s)
            return [ToolCall("x1", "exec", json.dumps({"command": "rm -rf d && echo cleaned"}))]
        return "result: " + last.content

    return FunctionProvider(model)


def _asking_config(make_config: Any, turn_deadline_s: float, approval_s: float = 300) -> Any:
    return make_config(
        sandbox={"backend": "bwrap", "approval": "ask", "approval_timeout_s": approval_s},
        gateway={"turn_deadline_s": turn_deadline_s},
    )


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_an_approval_given_after_the_turn_deadline_still_runs_the_command(
    make_config: Any,
) -> None:
    # The request said "expires in 5 min", but the turn gave up at its own deadline (2 min by
    # default): the person was told it took too long and the owner's answer found nothing.
    channel = RecordingChannel(console=True)
    # a short deadline leaves a quarter of itself (1.5 s) for the answer, ~4 s for the command
    config = _asking_config(make_config, 6)
    async with Gateway(config, provider=_cleanup_model(), channels={"test": channel}):
        await channel.push("clean up the folder", user="owner")
        [ask] = await channel.wait_for_messages(1, timeout=10)
        await asyncio.sleep(7)  # past the turn's deadline
        approval_id = re.search(r"/approve (\w+)", ask).group(1)  # type: ignore[union-attr]
        await channel.push(f"/approve {approval_id}", user="owner")
        await channel.wait_for_messages(3, timeout=20)
    texts = channel.texts()
    assert "expires in 5 min" in ask
    assert texts[1] == "Approved." and "cleaned" in texts[2]


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
@pytest.mark.parametrize(
    ("turn_deadline_s", "approval_s", "said"),
    [(60, 45, "45 s"), (600, 170, "2 min 50 s"), (600, 119.6, "119 s")],
)
async def test_a_request_says_its_expiry_to_the_second(
    turn_deadline_s: float, approval_s: float, said: str, make_config: Any
) -> None:
    # a turn's later request may be left less than its window: "1 min" for 45 s, or "3 min"
    # for 170 s, would promise more time than there is
    channel = RecordingChannel(console=True)
    config = _asking_config(make_config, turn_deadline_s, approval_s=approval_s)
    async with Gateway(config, provider=_cleanup_model(), channels={"test": channel}):
        await channel.push("clean up the folder", user="owner")
        [ask] = await channel.wait_for_messages(1, timeout=10)
        approval_id = re.search(r"/approve (\w+)", ask).group(1)  # type: ignore[union-attr]
        await channel.push(f"/deny {approval_id}", user="owner")
        await channel.wait_for_messages(3, timeout=20)
    assert f"expires in {said})" in ask


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_the_owner_is_not_asked_for_a_command_the_turn_has_no_time_left_to_run(
    make_config: Any,
) -> None:
    channel = RecordingChannel(console=True)
    # a slow model call takes 5.5 s of an 8 s turn: 2 s is kept for the answer, 1 s is the least
    # a command gets; the 2.5 s left carry the refusal, the second model call and the reply
    provider = _cleanup_model(thinking_s=5.5)
    async with Gateway(
        _asking_config(make_config, 8), provider=provider, channels={"test": channel}
    ):
        await channel.push("clean up the folder", user="owner")
        [reply] = await channel.wait_for_messages(1, timeout=15)
    # the approval would have been refused for too little time after the owner said yes
    assert "/approve" not in reply
    assert reply.startswith("result: error: not run: this turn has") and "seconds left" in reply
