"""Check-ins against a model endpoint that fails them: an answer broken off mid-stream is
tried again rather than sent half, a failure after a tool ran is told once and not tried
again, and an empty answer sends nothing."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from bot.gateway import Gateway
from bot.providers.base import ToolCall
from bot.scheduler.service import Scheduler
from tests.core.checkins_harness import CHANNELS, START, ask, checkin_job, until
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, Reply


async def _on_a_clock(gw: Gateway) -> tuple[Scheduler, list[float]]:
    """The scheduler once the warm-up is done, on a clock the test moves (`clock[0]`)."""
    await gw.warmup.wait()  # the scheduler is a warm-up step
    scheduler = gw.deps.scheduler
    assert scheduler is not None
    clock = [START]
    scheduler.clock = lambda: clock[0]
    return scheduler, clock


async def _checkin_come_due(
    gw: Gateway, channel: RecordingChannel
) -> tuple[Scheduler, list[float]]:
    """tg:u1's daily 7:30 check-in, set and run once at its first time."""
    scheduler, clock = await _on_a_clock(gw)
    await ask(channel, "/checkin daily 7:30")
    clock[0] = START + 30 * 60 + 5
    await scheduler.deliver_due()
    return scheduler, clock


def _fake_llm_config(make_config: Any, fake: FakeLLM) -> Any:
    return make_config(
        channels=CHANNELS,
        scheduler={"poll_seconds": 3600},
        checkins={"quiet_hours": ""},
        providers={"fake": fake.provider()},
        models={"chat": ["fake:alpha"]},
    )


async def test_a_checkin_whose_answer_breaks_off_mid_stream_is_tried_again_not_sent_half(
    make_config: Any, monkeypatch: Any
) -> None:
    """The connection to the model drops after a few words: nobody has seen anything yet,
    so the check-in is tried again later (as when the call fails outright) instead of
    sending the first words with "(the answer was interrupted)"."""
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")
    whole = "Your dentist appointment is at 10:00 today."
    async with FakeLLM() as fake:
        fake.push(Reply(text=whole, reset_after_chunks=4), whole)
        channel = RecordingChannel("tg", console=False)
        async with Gateway(_fake_llm_config(make_config, fake), channels={"tg": channel}) as gw:
            scheduler, clock = await _checkin_come_due(gw, channel)
            job = await checkin_job(gw)
            assert job.runs == 0 and job.run_at > clock[0]  # to be tried again
            assert len(channel.texts()) == 1  # only the answer to /checkin

            clock[0] = job.run_at + 61  # a minute on: the prompt's local time differs
            await scheduler.deliver_due()
            assert channel.texts()[1:] == [whole]
            assert (await checkin_job(gw)).runs == 1
            broken, retried = fake.calls(path="/v1/chat/completions")
    # the try again sees the job's history as it was: no half answer, no second prompt
    assert _without_local_time(retried.body["messages"]) == _without_local_time(
        broken.body["messages"]
    )


async def test_a_checkin_whose_model_call_fails_after_a_tool_ran_says_so_once(
    make_config: Any, monkeypatch: Any
) -> None:
    """The model call after a tool ran fails outright: a try again would run the tool again,
    so the person is told once what went wrong, and the check-in waits for its next day."""
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")
    call = ToolCall("t1", "current_time", json.dumps({"zone": "UTC"}))
    async with FakeLLM() as fake:
        # the provider's own retries of a 500 fail alike
        fake.push(Reply(tool_calls=[call]), *[Reply.error(500, "server")] * 6, "Hello.")
        channel = RecordingChannel("tg", console=False)
        async with Gateway(_fake_llm_config(make_config, fake), channels={"tg": channel}) as gw:
            scheduler, clock = await _checkin_come_due(gw, channel)
            [note] = channel.texts()[1:]
            assert "not answering" in note and "Hello." not in note
            asked = len(fake.calls(path="/v1/chat/completions"))
            job = await checkin_job(gw)
            assert job.runs == 1 and job.run_at > clock[0] + 3600  # its next day
            clock[0] += 3600  # long past any retry's time
            await scheduler.deliver_due()
            assert channel.texts()[1:] == [note]
        assert len(fake.calls(path="/v1/chat/completions")) == asked  # no try again


def _without_local_time(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with the check-in prompt's "Their local time: ..." line blanked (the
    only part a later try changes)."""
    blanked = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            content = re.sub(r"Their local time: [^\n]*", "Their local time: -", content)
        blanked.append({**message, "content": content})
    assert any("Their local time: -" in str(m["content"]) for m in blanked)
    return blanked


async def test_a_checkin_whose_model_writes_nothing_sends_nothing(
    make_config: Any, monkeypatch: Any
) -> None:
    """An empty answer has nothing worth saying: no "(no answer)" arrives unasked."""
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")
    async with FakeLLM() as fake:
        fake.push(Reply(text=""))
        channel = RecordingChannel("tg", console=False)
        async with Gateway(_fake_llm_config(make_config, fake), channels={"tg": channel}) as gw:
            await _checkin_come_due(gw, channel)

            async def ran() -> bool:
                return (await checkin_job(gw)).runs == 1

            await until(ran)
            assert len(fake.calls(path="/v1/chat/completions")) == 1
            await asyncio.sleep(0.2)
            assert channel.texts() == [channel.texts()[0]]  # only the answer to /checkin
