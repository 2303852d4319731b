"""The send path against the fake: pacing, 429s, streaming edits, threads remembered."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.channel_configs.slack import SlackChannelConfig
from bot.messages import (
    Choice,
    Conversation,
    ConversationKind,
    InboundMessage,
    OutboundMessage,
)
from bot.providers.base import ChatRequest, Finish, TextDelta
from bot.providers.testing import FunctionProvider, ScriptedProvider
from channels.slack import SlackChannel
from channels.slack_api import SlackApi, WorkingSignal
from tests.channels.slack.conftest import idle, until, user_texts
from tests.fakes.slack import FakeSlack


@pytest.fixture
async def channel(fake: FakeSlack, tmp_path: Path) -> AsyncIterator[SlackChannel]:
    settings = SlackChannelConfig(type="slack", api_url=fake.api_url)
    channel = SlackChannel("slack", settings, tmp_path)

    async def sink(message: InboundMessage) -> None:
        return None

    await channel.start(sink)
    yield channel
    await channel.stop()


def _to(chat_id: str, text: str) -> OutboundMessage:
    return OutboundMessage(Conversation("slack", chat_id, ConversationKind.CHANNEL), text)


async def test_r8_slack_outbound_rate_limits_and_429(
    fake: FakeSlack, channel: SlackChannel
) -> None:
    assert SlackChannel.chat_interval == 1.0  # Slack's one message a second per channel
    channel.chat_interval = 0.25  # the same rule, faster, so the test stays short
    fake.fail("chat.postMessage", status=429, retry_after=1, after=3)
    burst = asyncio.gather(*(channel.send(_to("C0001", f"m{i}")) for i in range(10)))
    await until(lambda: channel._paused_until > time.monotonic())  # the SDK saw the 429
    # the 429 pauses every send of the channel, not only this Slack channel's
    other = await channel.send(_to("C0002", "elsewhere"))
    await burst
    posts = fake.method_calls("chat.postMessage", status=None)
    (limited,) = [c for c in posts if c.status == 429]
    done = [c for c in posts if c.status == 200 and c.params["channel"] == "C0001"]
    assert [c.params["text"] for c in done] == [f"m{i}" for i in range(10)]
    gaps = [b.at - a.at for a, b in itertools.pairwise(done)]
    assert min(gaps) >= 0.25 * 0.95, gaps
    after = next(c for c in posts if c.at > limited.at and c.status == 200)
    assert after.at - limited.at >= 1.0
    (elsewhere,) = [c for c in posts if c.params["channel"] == "C0002"]
    assert elsewhere.at - limited.at >= 0.95 and other.message_id


async def test_429s_beyond_the_sdks_retry_pause_and_retry_in_the_channel(
    fake: FakeSlack, channel: SlackChannel
) -> None:
    channel.chat_interval = 0.0
    fake.fail("chat.postMessage", status=429, retry_after=1, times=2)
    started = time.monotonic()
    ref = await channel.send(_to("C0001", "eventually"))
    posts = fake.method_calls("chat.postMessage", status=None)
    assert [c.status for c in posts] == [429, 429, 200]
    # the SDK waited out the first Retry-After, the channel's pause the second
    assert time.monotonic() - started >= 2.0
    assert ref.message_id and posts[-1].params["text"] == "eventually"


async def test_answers_stream_by_edits_at_most_once_a_second(fake: FakeSlack, running: Any) -> None:
    async def slowly(request: ChatRequest) -> AsyncIterator[Any]:
        for i in range(50):
            await asyncio.sleep(0.08)
            yield TextDelta(f"w{i} ")
        yield Finish()

    async with running(FunctionProvider(slowly)) as (gateway, _channel):
        await fake.socket_send("events_api", fake.event("dm_message"))
        await until(lambda: fake.method_calls("chat.update"), timeout=15)
        await idle(gateway)
    posts = fake.method_calls("chat.postMessage")
    writes = sorted(posts + fake.method_calls("chat.update"), key=lambda c: c.at)
    assert len(posts) == 1 and len(writes) >= 2
    gaps = [b.at - a.at for a, b in itertools.pairwise(writes)]
    # sent a second apart; measured on arrival, where a busy machine can delay one request
    # more than the next (an unthrottled stream would arrive 0.08 s apart)
    assert min(gaps) >= 0.8, gaps
    assert writes[-1].params["text"].split() == [f"w{i}" for i in range(50)]


async def test_without_streaming_one_message_carries_the_whole_answer(
    fake: FakeSlack, running: Any
) -> None:
    long = "\n\n".join(f"Paragraph {i}. " + "word " * 150 for i in range(8))
    async with running(ScriptedProvider([long]), stream=False) as (gateway, _channel):
        await fake.socket_send("events_api", fake.event("dm_message"))
        await until(lambda: len(fake.method_calls("chat.postMessage")) >= 2)
        await idle(gateway)
    texts = [c.params["text"] for c in fake.method_calls("chat.postMessage")]
    assert not fake.method_calls("chat.update")
    assert all(len(t) <= 4000 for t in texts) and len(texts) == 2
    assert " ".join(" ".join(texts).split()) == " ".join(long.split())


async def test_the_bots_threads_are_remembered_across_a_restart(
    fake: FakeSlack, running: Any
) -> None:
    provider = ScriptedProvider(["Paris.", "Rome."])
    mention = fake.event("app_mention")
    root = mention["event"]["ts"]
    async with running(provider) as (gateway, _channel):
        await fake.socket_send("events_api", mention)
        await fake.wait_for("chat.postMessage", thread_ts=root)
        await idle(gateway)
    start = len(fake.calls)
    async with running(provider) as (gateway, channel):
        assert ("C0001", root) not in channel.threads, "found in the store when needed"
        await fake.socket_send("events_api", fake.event("thread_reply", thread_ts=root))
        await fake.wait_for("chat.postMessage", start=start, thread_ts=root)
        await idle(gateway)
        assert ("C0001", root) in channel.threads
    assert user_texts(provider)[-1] == "and of Italy?"


async def test_a_long_question_with_buttons_keeps_its_code_block_whole_in_each_section(
    fake: FakeSlack, channel: SlackChannel
) -> None:
    channel.chat_interval = 0.0
    code = [f"print({i})  # ü & <b>" for i in range(40)]
    text = "Intro " + "x" * 2900 + "\n```python\n" + "\n".join(code) + "\n```\nRun it?"
    choices = (Choice("Yes", "/yes"), Choice("No", "/no"))
    ref = await channel.send(replace(_to("C0001", text), choices=choices))

    blocks = fake.blocks[("C0001", ref.message_id)]
    shown = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert len(shown) >= 2 and all(len(part) <= 3000 for part in shown)
    # Slack renders each section alone: a code block cut in two must be closed and reopened
    assert all(part.count("```") % 2 == 0 for part in shown), shown
    lines = [line for part in shown for line in part.split("\n") if line.startswith("print(")]
    assert lines == [line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                     for line in code]  # fmt: skip
    assert shown[-1].endswith("Run it?") and [b["type"] for b in blocks][-1] == "actions"


async def test_a_section_is_never_cut_inside_an_entity_or_a_link(
    fake: FakeSlack, channel: SlackChannel
) -> None:
    """Where no line or word is near, the cut at 3,000 characters moves back before an
    `&amp;` it would split; a word cut inside a link's label moves back before the link."""
    channel.chat_interval = 0.0
    choices = (Choice("Yes", "/yes"), Choice("No", "/no"))
    entity = "a" * 2994 + "&b" * 10  # the first "&amp;" would span the hard cut
    link = "y" * 2970 + " see [the docs](http://e.io/) and more"  # "the docs": a space
    shown: list[list[str]] = []
    for text in (entity, link):
        ref = await channel.send(replace(_to("C0001", text), choices=choices))
        blocks = fake.blocks[("C0001", ref.message_id)]
        shown.append([b["text"]["text"] for b in blocks if b["type"] == "section"])

    assert shown[0] == ["a" * 2994, "&amp;b" * 10]
    assert shown[1] == ["y" * 2970 + " see", "<http://e.io/|the docs> and more"]


async def test_the_thread_status_is_given_up_only_when_slack_says_the_method_is_not_there(
    fake: FakeSlack,
) -> None:
    api = SlackApi(fake.bot_token, fake.api_url, lambda seconds: None)
    signal = WorkingSignal(lambda: api, "eyes")
    thread = Conversation("slack", "C0001", ConversationKind.GROUP, thread_id="1700000000.000001")
    try:
        # a passing fault: this message shows a reaction, the next the status again
        fake.fail("assistant.threads.setStatus", status=500, error="internal_error")
        shown = await signal.show(thread, "1700000000.000002")
        assert shown is not None and shown.kind == "reaction"
        shown = await signal.show(thread, "1700000000.000003")
        assert shown is not None and shown.kind == "status"
        # the app lacks the scope: reactions from now on, without asking again each time
        fake.assistant_status = False
        shown = await signal.show(thread, "1700000000.000004")
        assert shown is not None and shown.kind == "reaction"
        asked = len(fake.method_calls("assistant.threads.setStatus", status=None))
        fake.assistant_status = True
        shown = await signal.show(thread, "1700000000.000005")
        assert shown is not None and shown.kind == "reaction"
        assert len(fake.method_calls("assistant.threads.setStatus", status=None)) == asked
    finally:
        await api.close()
