"""Reminders and tasks through the gateway: typed in a chat, delivered to that chat, also
across a restart."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bot.gateway import Gateway
from bot.providers.base import ChatRequest, ToolCall
from bot.providers.testing import Answer, FunctionProvider, ScriptedProvider
from tests.fakes.channel import RecordingChannel

# a reminder due while nothing runs is set this far ahead: the first gateway must stop first
DUE_AFTER_DOWN_S = 5


async def test_remind_command_delivers_verbatim_to_the_same_chat(make_config: Any) -> None:
    provider = ScriptedProvider([])
    channel = RecordingChannel(console=True)
    async with Gateway(make_config(), provider=provider, channels={"test": channel}):
        await channel.push("/remind in 2s stretch your back")
        confirmation = (await channel.wait_for_messages(1))[0]
        assert "stretch your back" in confirmation
        texts = await channel.wait_for_messages(2, timeout=30)
    assert texts[1].endswith("stretch your back") and "late" not in texts[1]
    assert provider.requests == [], "no model decides whether a reminder is sent"


async def test_plain_remind_me_sentence_needs_no_model(make_config: Any) -> None:
    provider = ScriptedProvider([])
    channel = RecordingChannel(console=True)
    async with Gateway(make_config(), provider=provider, channels={"test": channel}):
        await channel.push("remind me in 2 seconds to drink water")
        await channel.push("remind me at 9 to call")
        texts = await channel.wait_for_messages(3, timeout=30)
    assert "morning or in the evening" in texts[1]  # ambiguous: a question, never a guess
    assert texts[2].endswith("drink water")
    assert provider.requests == []


async def test_reminder_due_while_down_arrives_after_restart_marked_late(
    make_config: Any,
) -> None:
    config = make_config(scheduler={"late_note_after_seconds": 0})
    first = RecordingChannel(console=True)
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": first}):
        pushed = time.monotonic()
        await first.push(f"/remind in {DUE_AFTER_DOWN_S}s stand up")
        await first.wait_for_messages(1)
    # due while nothing runs: far enough ahead that a busy machine has stopped the first
    # gateway by then
    assert len(first.texts()) == 1, "the reminder came due before the gateway stopped"
    await asyncio.sleep(pushed + DUE_AFTER_DOWN_S + 1.0 - time.monotonic())
    second = RecordingChannel(console=True)
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": second}):
        [late] = await second.wait_for_messages(1, timeout=30)
        await asyncio.sleep(0.3)
    assert "stand up" in late and "late by" in late
    assert len(second.texts()) == 1, "delivered once"


async def test_a_scheduled_task_runs_the_agent_and_delivers_its_answer(make_config: Any) -> None:
    channel = RecordingChannel(console=True)
    schedule = ToolCall(
        "s1",
        "schedule_job",
        json.dumps({"text": "tell me a fun fact", "kind": "task", "delay": "2s"}),
    )

    async def answer(request: ChatRequest) -> Answer:
        # Each call is answered by what it asks, not by its place in the order of calls: on
        # a loaded machine the task may come due before the turn that scheduled it ends.
        last = request.messages[-1]
        if last.content == "tell me a fun fact":
            await channel.wait_for_messages(1)  # the confirmation is out first
            return "Octopuses have three hearts."
        return "Scheduled." if last.role == "tool" else [schedule]

    provider = FunctionProvider(answer)
    async with Gateway(make_config(), provider=provider, channels={"test": channel}) as gw:
        await channel.push("in 2 seconds tell me a fun fact")
        texts = await channel.wait_for_messages(2, timeout=30)
        assert gw.deps.scheduler is not None
        # the job is marked done just after its answer is sent: wait for that, not a guess
        async with asyncio.timeout(30):
            while jobs := await gw.deps.scheduler.list_jobs("test:u1"):
                await asyncio.sleep(0.02)
    assert texts[0] == "Scheduled."
    assert "three hearts" in texts[1]
    asked = [request.messages[-1].content for request in provider.requests]
    assert asked.count("tell me a fun fact") == 1, asked
    assert len(provider.requests) == 3, "two calls for the turn, one for the task"
    assert jobs == []  # a one-shot task is done after it ran


async def test_a_reminder_too_far_ahead_is_refused_and_the_list_still_works(
    make_config: Any,
) -> None:
    channel = RecordingChannel(console=True)
    async with Gateway(make_config(), provider=ScriptedProvider([]), channels={"test": channel}):
        await channel.push("/remind every 999999w renew the passport")
        await channel.push("/remind in 99999999999999d x")
        await channel.push("/reminders")
        texts = await channel.wait_for_messages(3)
    # a time past what a date can say was stored, then its confirmation (and every listing
    # after it) failed with "Something went wrong"
    assert texts[0] == "That is too far ahead."
    assert texts[1] == "99999999999999d is too long. Please give a shorter time."
    assert texts[2] == "You have no reminders or scheduled tasks."
