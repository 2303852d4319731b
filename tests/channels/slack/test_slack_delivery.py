"""Delivery against Slack's clock, through the real slack-bolt and the real Gateway: a thread
follow-up sent while the first answer is still being written, and an inbox slower than the
3 s Slack waits for its acknowledgement, in Socket Mode and over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.errors import StoreError
from bot.gateway import Gateway
from bot.messages import InboundMessage
from bot.providers.base import ChatRequest
from bot.providers.testing import FunctionProvider, ScriptedProvider
from tests.channels.slack.conftest import (
    events_url,
    idle,
    message_key,
    spy_on_sink,
    until,
    user_texts,
)
from tests.fakes.slack import FakeSlack

#: what Slack waits for an acknowledgement before it counts the delivery as failed
SLACK_ACK_TIMEOUT_S = 3.0
#: the inbox write of the slow-inbox tests: well past Slack's patience
SLOW_STORE_S = 5.0


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_follow_up_sent_while_the_first_answer_is_written_is_answered_after_it(
    fake: FakeSlack, running: Any
) -> None:
    writing, release = asyncio.Event(), asyncio.Event()

    async def answer(request: ChatRequest) -> str:
        if request.messages[-1].content == "and of Italy?":
            return "Rome."
        writing.set()
        await release.wait()
        return "Paris."

    provider = FunctionProvider(answer)
    async with running(provider) as (gateway, channel):
        seen = spy_on_sink(channel)
        mention = fake.event("app_mention")
        root = mention["event"]["ts"]
        assert await fake.socket_send("events_api", mention) is not None
        await asyncio.wait_for(writing.wait(), 5)
        # the bot has not posted in the thread yet: it is known from the accepted mention
        assert not fake.method_calls("chat.postMessage")
        follow_up = fake.event("thread_reply", thread_ts=root)  # no mention
        assert await fake.socket_send("events_api", follow_up) is not None
        await until(lambda: len(seen) == 2)
        # kept in the store at once, so a restart (or another replica) is not deaf to it
        assert await gateway.store.channel_state.has_thread("slack", "C0001", root)
        release.set()
        await until(lambda: len(fake.method_calls("chat.postMessage")) == 2)
        await idle(gateway)
    assert [m.text for m in seen] == ["what is the capital of France?", "and of Italy?"]
    assert user_texts(provider) == ["what is the capital of France?", "and of Italy?"]
    posts = [call.params for call in fake.method_calls("chat.postMessage")]
    assert [p["text"] for p in posts] == ["Paris.", "Rome."]
    assert all(p["thread_ts"] == root for p in posts)


@pytest.mark.parametrize("mode", ["socket", "http"])
async def test_event_types_nobody_listens_to_are_acknowledged_and_ignored(
    fake: FakeSlack, running: Any, session: aiohttp.ClientSession, mode: str
) -> None:
    provider = ScriptedProvider([])
    async with running(provider, **_mode(mode)) as (gateway, _channel):
        deliver = Deliver(fake, gateway, mode, session)
        acks = []
        for kind in ("app_home_opened", "member_joined_channel", "reaction_added"):
            body = fake.event("dm_message")
            body["event"] = {"type": kind, "user": "U0001", "channel": "C0001", "event_ts": "1.2"}
            acks.append(await deliver(body))
        await idle(gateway)
        stored = await _stored(gateway)
    # acknowledged, so Slack does not send them again; nothing stored, nothing asked
    assert all(ack is not None for ack in acks), acks
    assert stored == [] and provider.requests == []


class Deliver:
    """One event the way Slack sends it in either mode: how long the acknowledgement took
    (None: never acknowledged)."""

    def __init__(self, fake: FakeSlack, gateway: Gateway, mode: str, http: Any) -> None:
        self.fake, self.gateway, self.mode, self.http = fake, gateway, mode, http

    async def __call__(self, body: dict[str, Any], retry: int = 0) -> float | None:
        if self.mode == "socket":
            ack = await self.fake.socket_send(
                "events_api",
                body,
                retry_attempt=retry,
                retry_reason="timeout" if retry else "",
                timeout=SLOW_STORE_S + 2,
            )
            return None if ack is None else ack.elapsed
        result = await self.fake.post_signed(
            self.http,
            events_url(self.gateway),
            body,
            retry_num=retry or None,
            retry_reason="http_timeout" if retry else None,
        )
        return result.elapsed if result.status == 200 else None


def _mode(mode: str) -> dict[str, Any]:
    return {"http": True, "mode": "http"} if mode == "http" else {}


def slow_inbox(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, failure: Exception | None = None
) -> None:
    """The next inbox write takes SLOW_STORE_S, and then fails with `failure` if one is
    given; the writes after it are quick."""
    insert = gateway.store.inbound.insert
    slow = [failure]

    async def slow_insert(message: InboundMessage) -> bool:
        if slow:
            await asyncio.sleep(SLOW_STORE_S)
            error = slow.pop()
            if error is not None:
                raise error
        return bool(await insert(message))

    monkeypatch.setattr(gateway.store.inbound, "insert", slow_insert)


async def _stored(gateway: Gateway) -> list[tuple[str, str]]:
    rows = await gateway.store.read(
        lambda c: c.execute("SELECT delivery_id, status FROM inbound").fetchall()
    )
    return [tuple(row) for row in rows]


@pytest.mark.parametrize("mode", ["socket", "http"])
async def test_a_slow_inbox_is_acknowledged_in_time_and_stored_and_answered_once(
    fake: FakeSlack,
    running: Any,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    provider = ScriptedProvider(["answered once"])
    async with running(provider, **_mode(mode)) as (gateway, _channel):
        deliver = Deliver(fake, gateway, mode, session)
        slow_inbox(gateway, monkeypatch)
        body = fake.event("dm_message")
        first = await deliver(body)
        # Slack sends it again while the inbox is still writing it
        again = await deliver(body, retry=1)
        await fake.wait_for("chat.postMessage", channel="D0001", timeout=3 * SLOW_STORE_S)
        await idle(gateway)
        stored = await _stored(gateway)
    assert first is not None and first < SLACK_ACK_TIMEOUT_S, first
    assert again is not None and again < SLACK_ACK_TIMEOUT_S, again
    assert stored == [(message_key(body), "done")]
    assert len(provider.requests) == 1
    assert len(fake.method_calls("chat.postMessage")) == 1


@pytest.mark.parametrize("mode", ["socket", "http"])
async def test_an_acknowledged_event_the_inbox_fails_to_take_late_is_stored_after_all(
    fake: FakeSlack,
    running: Any,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    provider = ScriptedProvider(["answered after all"])
    async with running(provider, **_mode(mode)) as (gateway, _channel):
        deliver = Deliver(fake, gateway, mode, session)
        # slow, and then it fails: Slack has its ack by then and will not send it again
        slow_inbox(gateway, monkeypatch, StoreError("database is locked"))
        body = fake.event("dm_message")
        acked = await deliver(body)
        await fake.wait_for("chat.postMessage", channel="D0001", timeout=3 * SLOW_STORE_S)
        await idle(gateway)
        stored = await _stored(gateway)
    assert acked is not None and acked < SLACK_ACK_TIMEOUT_S, acked
    assert stored == [(message_key(body), "done")]
    assert len(provider.requests) == 1
