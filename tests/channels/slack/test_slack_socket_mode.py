"""End to end in Socket Mode: the real slack-bolt against the fake, through the real Gateway."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest

from bot.errors import ChannelError
from bot.messages import ConversationKind
from bot.providers.base import ChatRequest
from bot.providers.testing import FunctionProvider, ScriptedProvider
from tests.channels.slack.conftest import idle, spy_on_sink, until, user_texts
from tests.fakes.slack import FakeSlack, same_message


async def test_dm_is_answered_in_the_dm_with_mrkdwn_and_a_working_reaction(
    fake: FakeSlack, running: Any
) -> None:
    provider = ScriptedProvider(["Paris is **the** capital & [more](https://fr.example)."])
    async with running(provider) as (gateway, _channel):
        body = fake.event("dm_message", text="what is the capital of <https://fr.example|France>?")
        ack = await fake.socket_send("events_api", body)
        assert ack is not None and ack.payload is None
        posted = await fake.wait_for("chat.postMessage", channel="D0001")
        await idle(gateway)
        await fake.wait_for("reactions.remove", name="eyes")
        session = gateway.sessions.get("slack:dm:D0001")
        assert session.row is not None
    assert posted["text"] == "Paris is *the* capital &amp; <https://fr.example|more>."
    assert "thread_ts" not in posted
    assert user_texts(provider) == ["what is the capital of France (https://fr.example)?"]
    added = await fake.wait_for("reactions.add")
    assert added == {"channel": "D0001", "timestamp": body["event"]["ts"], "name": "eyes"}


async def test_channel_mention_is_answered_once_in_a_thread(fake: FakeSlack, running: Any) -> None:
    provider = ScriptedProvider(["Paris."])
    fake.assistant_status = False
    async with running(provider) as (gateway, channel):
        message = fake.event("channel_message")
        mention = same_message(message, fake.event("app_mention"))
        # Slack sends both for one message; each has its own event_id
        acks = await asyncio.gather(
            fake.socket_send("events_api", message), fake.socket_send("events_api", mention)
        )
        assert all(ack is not None for ack in acks)
        ts = message["event"]["ts"]
        posted = await fake.wait_for("chat.postMessage", channel="C0001")
        await idle(gateway)
        assert posted["thread_ts"] == ts
        assert user_texts(provider) == ["what is the capital of France?"]
        assert ("C0001", ts) in channel.threads
        assert gateway.sessions.get(f"slack:channel:C0001:thread:{ts}").row is not None
        await fake.wait_for("reactions.remove", timestamp=ts)


async def test_follow_up_in_the_bots_thread_needs_no_mention(fake: FakeSlack, running: Any) -> None:
    provider = ScriptedProvider(["Paris.", "Rome."])
    async with running(provider) as (gateway, _channel):
        mention = fake.event("app_mention")
        root = mention["event"]["ts"]
        await fake.socket_send("events_api", mention)
        await fake.wait_for("chat.postMessage", channel="C0001", thread_ts=root)
        await idle(gateway)
        start = len(fake.calls)
        follow_up = fake.event("thread_reply", thread_ts=root)
        await fake.socket_send("events_api", follow_up)
        second = await fake.wait_for("chat.postMessage", start=start, channel="C0001")
        await idle(gateway)
    assert second["thread_ts"] == root
    assert user_texts(provider) == ["what is the capital of France?", "and of Italy?"]
    # the thread's session holds both turns, with the status shown while it worked
    assert fake.method_calls("assistant.threads.setStatus")
    assert not fake.method_calls("reactions.add")


async def test_channel_chatter_without_a_mention_is_not_stored(
    fake: FakeSlack, running: Any
) -> None:
    provider = ScriptedProvider([])
    async with running(provider) as (gateway, _channel):
        chatter = fake.event("channel_message", text="lunch anyone?")
        elsewhere = fake.event("thread_reply", thread_ts="1700000000.000001")
        for body in (chatter, elsewhere):
            assert await fake.socket_send("events_api", body) is not None
        await idle(gateway)
        stored = await gateway.store.inbound.open_deliveries()
    assert stored == [] and provider.requests == []
    assert not fake.method_calls("chat.postMessage")


async def test_unknown_dm_sender_gets_only_a_pairing_code(fake: FakeSlack, running: Any) -> None:
    provider = ScriptedProvider([])
    async with running(provider, access={"dm_policy": "pairing"}) as (gateway, _channel):
        await fake.socket_send("events_api", fake.event("dm_message", user="U0999"))
        posted = await fake.wait_for("chat.postMessage", channel="D0001")
        await idle(gateway)
        await fake.socket_send("events_api", fake.event("dm_message", user="U0999"))
        await idle(gateway)
    assert "approve you with the code" in posted["text"]
    assert len(fake.method_calls("chat.postMessage")) == 1  # one notice per interval
    assert provider.requests == []


async def test_slash_command_acks_at_once_and_answers_at_the_response_url(
    fake: FakeSlack, running: Any
) -> None:
    # the answer waits until the ack is in: the ack cannot be late because of it, and no
    # wall-clock race with a busy machine decides the test
    release = asyncio.Event()

    async def slow(request: ChatRequest) -> str:
        await release.wait()
        return "It is **4**."

    async with running(FunctionProvider(slow)) as (gateway, _channel):
        url = fake.response_url()
        ack = await fake.socket_send(
            "slash_commands",
            fake.slash("ask what is 2+2", response_url=url),
            accepts_response_payload=True,
        )
        # within Slack's 3 s, while the answer is still held back
        assert ack is not None and ack.elapsed < 3.0
        assert ack.payload == {"text": "Working on it…", "response_type": "ephemeral"}
        assert fake.responses == []
        acked_at = time.monotonic()
        release.set()
        (answer,) = await fake.wait_for_responses(1)
        await idle(gateway)
    assert answer.params == {"text": "It is *4*.", "response_type": "in_channel"}
    assert answer.at > acked_at  # the answer came after the ack


async def test_slash_subcommands_help_and_status(fake: FakeSlack, running: Any) -> None:
    async with running(ScriptedProvider([])) as (gateway, _channel):
        help_ack = await fake.socket_send(
            "slash_commands", fake.slash(""), accepts_response_payload=True
        )
        assert help_ack is not None and help_ack.payload is not None
        listing = help_ack.payload["text"]
        for name in ("ask", "new", "status"):
            assert f"`/decapod {name}" in listing
        assert "`/decapod ask &lt;question&gt;` — Ask a question" in listing
        status_ack = await fake.socket_send(
            "slash_commands", fake.slash("status", channel_id="D0001", channel_name="directmessage")
        )
        assert status_ack is not None and status_ack.payload is None
        (status,) = await fake.wait_for_responses(1)
        await idle(gateway)
    assert status.params["response_type"] == "ephemeral"
    assert "session: slack:dm:D0001" in status.params["text"]


async def test_a_redelivered_envelope_is_processed_once(fake: FakeSlack, running: Any) -> None:
    provider = ScriptedProvider(["once"])
    async with running(provider) as (gateway, _channel):
        body = fake.event("dm_message")
        first = await fake.socket_send("events_api", body)
        again = await fake.socket_send("events_api", body, retry_attempt=1, retry_reason="timeout")
        assert first is not None and again is not None
        await fake.wait_for("chat.postMessage")
        await idle(gateway)
    assert len(provider.requests) == 1


async def test_subtypes_are_skipped_or_judged_deliberately(fake: FakeSlack, running: Any) -> None:
    provider = ScriptedProvider([])
    async with running(provider) as (gateway, _channel):
        for name in ("message_changed", "message_deleted", "channel_join", "bot_message"):
            assert await fake.socket_send("events_api", fake.event(name)) is not None
        own = fake.event("dm_message", user="UBOT", bot_id="BBOT")
        assert await fake.socket_send("events_api", own) is not None
        await idle(gateway)
        stored = await gateway.store.read(
            lambda c: c.execute("SELECT status, error FROM inbound").fetchall()
        )
    # only the other bot's mention reaches the gateway (which refuses bots by default);
    # the bot's own message never does
    assert [tuple(row) for row in stored] == [("denied", "bot sender")]
    assert provider.requests == []


async def test_malformed_frames_and_payloads_are_skipped(fake: FakeSlack, running: Any) -> None:
    provider = ScriptedProvider(["still here"])
    async with running(provider) as (gateway, channel):
        await fake.socket_send_raw("this is not json")
        broken = [
            {"type": "event_callback", "event_id": "Ev1"},
            fake.event("dm_message", channel=None),
            fake.event("dm_message", user=None),
            fake.event("dm_message", files="nope", text={"a": 1}),
        ]
        # Bolt leaves an event_callback without an event unanswered (a short wait shows it);
        # ours are acknowledged, however long a busy machine takes
        assert await fake.socket_send("events_api", broken[0], timeout=1.0) is None
        acks = [await fake.socket_send("events_api", body) for body in broken[1:]]
        assert all(ack is not None for ack in acks)
        await fake.socket_send("events_api", fake.event("dm_message"))
        posted = await fake.wait_for("chat.postMessage")
        await idle(gateway)
        assert channel.health()["running"]
    assert posted["text"] == "still here"
    assert len(provider.requests) == 1


async def test_files_become_attachments_within_the_size_cap(fake: FakeSlack, running: Any) -> None:
    provider = ScriptedProvider(["It says to buy milk."])
    notes = fake.add_file("notes.txt", b"buy more milk")
    async with running(provider) as (gateway, channel):
        seen = spy_on_sink(channel)
        body = fake.event("file_share")
        body["event"]["files"][0]["url_private_download"] = notes
        await fake.socket_send("events_api", body)
        await until(lambda: len(fake.texts("D0001")) == 2)
        await idle(gateway)
        (message,) = seen
        part = message.parts[0]
        assert message.conversation.kind is ConversationKind.DM
        assert (part.kind, part.name, part.mime, part.size) == (
            "document",
            "notes.txt",
            "text/plain",
            13,
        )
        assert await channel.fetch(part, 1000) == b"buy more milk"
        with pytest.raises(ChannelError, match="is 13 bytes; the limit is 5 bytes"):
            await channel.fetch(part, 5)
        elsewhere = dataclasses.replace(part, ref="https://attacker.example/notes.txt", size=None)
        with pytest.raises(ChannelError, match="not a Slack file URL"):
            await channel.fetch(elsewhere, 1000)
    assert fake.texts("D0001") == [
        "I can't open holiday.mov: I don't read video/quicktime files "
        "(I take images, PDFs, text files and voice notes)",
        "It says to buy milk.",
    ]
    prompt = user_texts(provider)[0]
    assert "[document notes.txt" in prompt and "buy more milk" in prompt  # read, as text
