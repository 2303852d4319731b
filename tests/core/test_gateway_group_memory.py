"""Memory in a group: what a person told the assistant in a DM is never recalled into a
group's prompt nor found or forgotten by the memory tools there; what was saved in a group is
recalled only in that group. A DM recalls its own facts as before. Alice is a user of a
platform's channel, not the owner at the operator's console."""

from __future__ import annotations

import json
from typing import Any

from bot.gateway import Gateway
from bot.messages import ConversationKind
from bot.providers.base import ChatRequest, ToolCall
from bot.providers.testing import FunctionProvider
from tests.fakes.channel import RecordingChannel

GROUP = {"chat": "g", "kind": ConversationKind.GROUP}
DM_FACT = "The person's diagnosis is lupus nephritis."
GROUP_FACT = "The person's team meets on thursday."
QUESTION = "what is my diagnosis and when does my team meet?"


def _config(make_config: Any) -> Any:
    access = {"dm_policy": "open", "groups": {"*": {"require_mention": False}}}
    return make_config(channels={"test": {"type": "telegram", "access": access}})


def _model(seen: list[ChatRequest], tool_results: list[str]) -> Any:
    """Saves on "remember: ...", calls a memory tool on "tool: name {args}", else answers."""

    async def model(request: ChatRequest) -> Any:
        seen.append(request)
        last = request.messages[-1]
        if last.role == "tool":
            tool_results.append(last.content)
            return "done"
        if last.content.startswith("remember: "):
            text = last.content.removeprefix("remember: ")
            return [ToolCall("s1", "memory_save", json.dumps({"text": text}))]
        if last.content.startswith("tool: "):
            name, args = last.content.removeprefix("tool: ").split(" ", 1)
            return [ToolCall("t1", name, args)]
        return "noted"

    return model


async def _say(channel: RecordingChannel, text: str, **where: Any) -> None:
    chat = where.get("chat", "alice")
    before = len(channel.texts(chat))
    await channel.push(text, user="alice", **where)
    await channel.wait_for_messages(before + 1, chat_id=chat)


def _asked(seen: list[ChatRequest]) -> list[ChatRequest]:
    return [r for r in seen if r.messages[-1].content == QUESTION]


def _everything(request: ChatRequest) -> str:
    return request.system + "\n".join(m.content for m in request.messages)


async def test_a_dm_fact_is_not_recalled_in_a_group_and_still_is_in_the_dm(
    make_config: Any,
) -> None:
    seen: list[ChatRequest] = []
    channel = RecordingChannel(console=False)  # a platform channel: alice is not the owner
    provider = FunctionProvider(_model(seen, []))
    async with Gateway(_config(make_config), provider=provider, channels={"test": channel}) as gw:
        await gw.warmup.wait()
        assert gw.access.role_of_key("test:alice") == "user"
        await _say(channel, f"remember: {DM_FACT}")
        await _say(channel, f"remember: {GROUP_FACT}", **GROUP)
        await _say(channel, QUESTION, **GROUP)
        await _say(channel, "/new")
        await _say(channel, QUESTION)
        await _say(channel, QUESTION, chat="g2", kind=ConversationKind.GROUP)
    in_group, in_dm, other_group = _asked(seen)
    assert "lupus" not in _everything(in_group), "a DM's fact reached the group's request"
    assert "thursday" in in_group.system, "what was said in the group is recalled there"
    assert "lupus" in in_dm.system, "the DM still recalls its own fact"
    assert "thursday" not in in_dm.system, "a group's item is not recalled in a DM"
    assert "lupus" not in _everything(other_group) and "thursday" not in other_group.system


async def test_memory_tools_in_a_group_see_and_forget_only_that_groups_items(
    make_config: Any,
) -> None:
    seen: list[ChatRequest] = []
    results: list[str] = []
    channel = RecordingChannel(console=False)  # a platform channel: alice is not the owner
    provider = FunctionProvider(_model(seen, results))
    search = "tool: memory_search " + json.dumps({"query": "diagnosis lupus team thursday"})
    forget = "tool: memory_forget " + json.dumps({"matching": "lupus"})
    async with Gateway(_config(make_config), provider=provider, channels={"test": channel}) as gw:
        await gw.warmup.wait()
        assert gw.access.role_of_key("test:alice") == "user"
        memory = gw.deps.memory
        assert memory is not None
        await _say(channel, f"remember: {DM_FACT}")
        await _say(channel, f"remember: {GROUP_FACT}", **GROUP)
        results.clear()
        await _say(channel, search, **GROUP)
        await _say(channel, forget, **GROUP)
        await _say(channel, search)
        kept = await memory.count("test:alice")
    found_in_group, forgot_in_group, found_in_dm = results
    assert "thursday" in found_in_group and "lupus" not in found_in_group
    assert forgot_in_group == "forgot 0 items", "a group cannot forget a DM's item"
    assert "lupus" in found_in_dm and "thursday" not in found_in_dm
    assert kept == 2, "a DM's /forget all counts the items saved in groups too"
