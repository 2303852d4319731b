"""Commands typed in a group show nothing private: reminders set in a DM, memory items, usage,
a check-in and what waits for the owner's approval are shown only in a direct message, where
the same commands answer as before."""

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
from bot.providers.testing import FunctionProvider, ScriptedProvider
from tests.fakes.channel import RecordingChannel

GROUP = {"chat": "g", "kind": ConversationKind.GROUP}
DM_REMINDER = "call the oncologist about the biopsy"
GROUP_REMINDER = "bring the cake"


def _config(make_config: Any, **sections: Any) -> Any:
    access = {"dm_policy": "open", "groups": {"*": {"require_mention": False}}}
    return make_config(
        channels={"test": {"type": "telegram", "access": access}},
        gateway={"owners": ["test:boss"]},
        **sections,
    )


async def _ask(channel: RecordingChannel, text: str, *, user: str, **kwargs: Any) -> str:
    """The next message in the chat `text` was typed in (a DM's chat is the person's id)."""
    chat = kwargs.get("chat") or user
    before = len(channel.texts(chat))
    await channel.push(text, user=user, **kwargs)
    return (await channel.wait_for_messages(before + 1, chat_id=chat))[before]


async def _remind(channel: RecordingChannel, what: str, **kwargs: Any) -> str:
    confirmation = await _ask(channel, f"/remind in 3h {what}", user="alice", **kwargs)
    found = re.search(r"Reminder (\w+) set", confirmation)
    assert found is not None, confirmation
    return found.group(1)


async def test_reminders_in_a_group_list_only_that_chats_jobs(make_config: Any) -> None:
    channel = RecordingChannel(console=False)
    config = _config(make_config)
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": channel}):
        await _remind(channel, DM_REMINDER)
        await _remind(channel, GROUP_REMINDER, **GROUP)
        in_group = await _ask(channel, "/reminders", user="alice", **GROUP)
        in_dm = await _ask(channel, "/reminders", user="alice")
        bob_in_group = await _ask(channel, "/reminders", user="bob", **GROUP)
    assert DM_REMINDER not in in_group and "oncologist" not in in_group
    assert GROUP_REMINDER in in_group
    assert "time zone" not in in_group, "where alice lives is not told to the group"
    assert "time zone" in in_dm
    assert "1 other reminder or task set elsewhere" in in_group and "direct message" in in_group
    assert DM_REMINDER in in_dm and GROUP_REMINDER in in_dm  # a DM lists them all, as before
    assert bob_in_group == "You have no reminders or scheduled tasks in this chat."


async def test_reminders_cancel_takes_only_the_persons_own_job(make_config: Any) -> None:
    channel = RecordingChannel(console=False)
    config = _config(make_config)
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": channel}):
        dm_job = await _remind(channel, DM_REMINDER)
        refused = await _ask(channel, f"/reminders cancel {dm_job}", user="bob", **GROUP)
        still = await _ask(channel, "/reminders", user="alice")
        before = await _ask(channel, "/reminders", user="alice", **GROUP)
        cancelled = await _ask(channel, f"/reminders cancel {dm_job}", user="alice", **GROUP)
        after = await _ask(channel, "/reminders", user="alice", **GROUP)
        in_dm = await _ask(channel, "/reminders", user="alice")
    assert refused.startswith("You have no open reminder or task") and DM_REMINDER in still
    assert dm_job not in before and "1 other reminder or task" in before
    # the person's own DM job may go from a group by its id: the answer shows nothing of it
    assert cancelled == f"Cancelled {dm_job}."
    assert after == "You have no reminders or scheduled tasks in this chat."
    assert in_dm == "You have no reminders or scheduled tasks."


async def test_the_list_jobs_tool_in_a_group_sees_only_that_chats_jobs(make_config: Any) -> None:
    listed: list[str] = []

    async def model(request: ChatRequest) -> Any:
        last = request.messages[-1]
        if last.role == "tool":
            listed.append(last.content)
            return "listed"
        return [ToolCall("l1", "list_jobs", json.dumps({}))]

    channel = RecordingChannel(console=False)
    config = _config(make_config)
    async with Gateway(config, provider=FunctionProvider(model), channels={"test": channel}):
        await _remind(channel, DM_REMINDER)
        await _remind(channel, GROUP_REMINDER, **GROUP)
        await _ask(channel, "what are my reminders?", user="alice", **GROUP)
        await _ask(channel, "what are my reminders?", user="alice")
    in_group, in_dm = listed
    assert GROUP_REMINDER in in_group and "oncologist" not in in_group
    assert "1 other reminder or task" in in_group
    assert DM_REMINDER in in_dm and GROUP_REMINDER in in_dm


async def test_forget_in_a_group_shows_and_deletes_nothing(make_config: Any) -> None:
    item = "my cardiologist appointment is on friday"
    channel = RecordingChannel(console=False)
    config = _config(make_config)
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": channel}) as gw:
        await gw.warmup.wait()  # memory is a warm-up step
        memory = gw.deps.memory
        assert memory is not None
        await memory.save("test:alice", item)
        answers = [
            await _ask(channel, text, user="alice", **GROUP)
            for text in ("/forget cardiologist", "/forget", "/forget all", "/forget all")
        ]
        kept = await memory.count("test:alice")
        in_dm = await _ask(channel, "/forget cardiologist", user="alice")
        left = await memory.count("test:alice")
    for answer in answers:
        assert "cardiologist" not in answer and "direct message" in answer
    assert kept == 1, "nothing is forgotten from a group, not even after `/forget all` twice"
    assert in_dm == f"Forgot 1 item:\n- {item}" and left == 0  # a DM works as before


async def test_usage_and_checkin_in_a_group_point_to_a_dm(make_config: Any) -> None:
    channel = RecordingChannel(console=False)
    config = _config(make_config, scheduler={"poll_seconds": 3600})
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": channel}):
        set_in_dm = await _ask(channel, "/checkin daily 6:45", user="alice")
        checkin_in_group = await _ask(channel, "/checkin", user="alice", **GROUP)
        checkin_in_dm = await _ask(channel, "/checkin", user="alice")
        usage_in_group = await _ask(channel, "/usage", user="alice", **GROUP)
        everyone_in_group = await _ask(channel, "/usage all", user="boss", **GROUP)
        usage_in_dm = await _ask(channel, "/usage", user="alice")
        everyone_in_dm = await _ask(channel, "/usage all", user="boss")
    assert "6:45" in set_in_dm and "6:45" in checkin_in_dm
    assert "6:45" not in checkin_in_group and "direct message" in checkin_in_group
    for answer in (usage_in_group, everyone_in_group):
        assert "tokens" not in answer and "direct message" in answer
    assert usage_in_dm.startswith("Your usage") and "Per person" in everyone_in_dm


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
async def test_what_waits_for_approval_is_listed_only_in_a_dm(make_config: Any) -> None:
    command = "rm -rf ~/diary-of-alice && echo cleaned"

    async def model(request: ChatRequest) -> Any:
        last = request.messages[-1]
        if last.role == "user":
            return [ToolCall("x1", "exec", json.dumps({"command": command}))]
        return "result: " + last.content

    channel = RecordingChannel(console=False)
    sandbox = {"backend": "bwrap", "approval": "ask", "exec_for_users": True}
    config = _config(make_config, sandbox=sandbox)
    async with Gateway(config, provider=FunctionProvider(model), channels={"test": channel}):
        await channel.push("clean up my diary", user="alice")
        [ask] = await channel.wait_for_messages(1, chat_id="boss", timeout=10)  # the owner's DM
        in_group = await _ask(channel, "/approve", user="boss", **GROUP)
        in_dm = await _ask(channel, "/approve", user="boss")
        found = re.search(r"request (\w+)", ask)
        assert found is not None, ask
        denied = await _ask(channel, f"/deny {found.group(1)}", user="boss", **GROUP)
        await channel.wait_for_messages(1, chat_id="alice", timeout=20)
        await asyncio.sleep(0.1)
    assert "diary-of-alice" in ask and "diary-of-alice" in in_dm
    assert "diary-of-alice" not in in_group and "direct message" in in_group
    assert denied == "Denied."  # deciding by id from a group shows nothing and still works


async def test_a_reminder_set_in_a_group_does_not_name_the_persons_time_zone(
    make_config: Any,
) -> None:
    """The zone alice set in a DM says where she lives: a confirmation in the group leaves
    it out (as the group's listing does), a DM's names it as before."""
    channel = RecordingChannel(console=False)
    config = _config(make_config)
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": channel}) as gw:
        await gw.store.identities.set_timezone("test:alice", "America/Argentina/Buenos_Aires")
        in_group = await _ask(channel, f"/remind in 3h {GROUP_REMINDER}", user="alice", **GROUP)
        repeating = await _ask(channel, "/remind every 2h stretch", user="alice", **GROUP)
        in_dm = await _ask(channel, f"/remind in 3h {DM_REMINDER}", user="alice")
    assert GROUP_REMINDER in in_group and "every 2h" in repeating
    assert "Buenos_Aires" not in in_group and "Buenos_Aires" not in repeating
    assert "(America/Argentina/Buenos_Aires)" in in_dm
