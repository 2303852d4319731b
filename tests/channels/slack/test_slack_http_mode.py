"""End to end over the HTTP Events API: signed POSTs to /slack/events on the gateway's own
server, through slack-bolt and the real Gateway."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bench.common import pct
from bot.errors import StoreError
from bot.messages import InboundMessage
from bot.providers.base import ChatRequest
from bot.providers.testing import FunctionProvider, ScriptedProvider
from tests.channels.slack.conftest import events_url, idle, user_texts
from tests.fakes.slack import FakeSlack, payload, same_message

HTTP: dict[str, Any] = {"http": True, "mode": "http"}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_dm_and_url_verification_over_http(
    fake: FakeSlack, running: Any, session: aiohttp.ClientSession
) -> None:
    provider = ScriptedProvider(["Hello over HTTP."])
    async with running(provider, **HTTP) as (gateway, _channel):
        url = events_url(gateway)
        challenge = payload("url_verification")
        verified = await fake.post_signed(session, url, challenge)
        assert verified.status == 200
        assert json.loads(verified.text) == {"challenge": challenge["challenge"]}
        result = await fake.post_signed(session, url, fake.event("dm_message"))
        assert result.status == 200
        posted = await fake.wait_for("chat.postMessage", channel="D0001")
        await idle(gateway)
    assert posted["text"] == "Hello over HTTP."
    assert user_texts(provider) == ["hello there"]


async def test_bad_signatures_get_401_and_reach_nothing(
    fake: FakeSlack, running: Any, session: aiohttp.ClientSession
) -> None:
    provider = ScriptedProvider([])
    async with running(provider, **HTTP) as (gateway, _channel):
        url = events_url(gateway)
        body = json.dumps(fake.event("dm_message"))
        wrong = await fake.post_signed(session, url, body, secret="not-the-signing-secret")
        stale = {
            **fake.sign(body, timestamp=int(time.time()) - 600),
            "Content-Type": "application/json",
        }
        garbled = {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"}
        statuses = [wrong.status]
        for headers in (stale, garbled, {}):
            async with session.post(url, data=body, headers=headers) as resp:
                statuses.append(resp.status)
        await idle(gateway)
        stored = await gateway.store.read(lambda c: c.execute("SELECT * FROM inbound").fetchall())
    assert statuses == [401, 401, 401, 401]
    assert stored == [] and provider.requests == []


async def test_malformed_signed_bodies_are_refused_without_retries(
    fake: FakeSlack, running: Any, session: aiohttp.ClientSession
) -> None:
    provider = ScriptedProvider(["fine"])
    async with running(provider, **HTTP) as (gateway, _channel):
        url = events_url(gateway)
        results = [await fake.post_signed(session, url, raw) for raw in ("{not json", "[1, 2]")]
        assert [r.status for r in results] == [400, 400]
        skipped = await fake.post_signed(session, url, fake.event("dm_message", ts=None))
        assert skipped.status == 200
        ok = await fake.post_signed(session, url, fake.event("dm_message"))
        assert ok.status == 200
        await fake.wait_for("chat.postMessage")
        await idle(gateway)
    assert len(provider.requests) == 1


async def test_slash_command_over_http_acks_before_the_slow_answer(
    fake: FakeSlack, running: Any, session: aiohttp.ClientSession
) -> None:
    # the answer waits until the ack is in: the ack cannot be late because of it, and no
    # wall-clock race with a busy machine decides the test
    release = asyncio.Event()

    async def slow(request: ChatRequest) -> str:
        await release.wait()
        return "4"

    async with running(FunctionProvider(slow), **HTTP) as (gateway, _channel):
        form = fake.slash("ask what is 2+2")
        result = await fake.post_signed(session, events_url(gateway), form, form=True)
        # within Slack's 3 s, while the answer is still held back
        assert result.status == 200 and result.elapsed < 3.0
        assert json.loads(result.text) == {"text": "Working on it…", "response_type": "ephemeral"}
        assert fake.responses == []
        release.set()
        (answer,) = await fake.wait_for_responses(1)
        await idle(gateway)
    assert answer.params == {"text": "4", "response_type": "in_channel"}


async def test_r7_slack_retry_dedupe_and_3s_ack(
    fake: FakeSlack, running: Any, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def answer(request: ChatRequest) -> str:
        if "slow" in request.messages[-1].content:
            await asyncio.sleep(5.0)  # the handler takes longer than Slack waits
        return "done"

    provider = FunctionProvider(answer)
    async with running(provider, **HTTP) as (gateway, _channel):
        url = events_url(gateway)
        body = fake.event("dm_message", text="slow question")
        first = await fake.post_signed(session, url, body)
        # Slack retries at the 3 s mark whether or not we answered in time
        await asyncio.sleep(3.0 - first.elapsed)
        retry = await fake.post_signed(session, url, body, retry_num=1, retry_reason="http_timeout")
        acks = [first.elapsed]
        for i in range(50):
            more = fake.event("dm_message", text="slow too", channel=f"D1{i:03d}", user=f"U{i}")
            result = await fake.post_signed(session, url, more)
            assert result.status == 200
            acks.append(result.elapsed)

        # the first attempt fails (the inbox cannot store it): 500, so Slack retries it
        store_insert = gateway.store.inbound.insert
        failed = fake.event("dm_message", text="after a failure", channel="D0002", user="U0002")
        # Only this event's first write fails: an earlier event whose write is still going
        # (acknowledged at the budget on a loaded machine) must not take the fault. Not worded
        # as an SQLite error: it is logged in every run, and is not one.
        failures = [StoreError("the inbox refused the write")]

        async def flaky_insert(message: InboundMessage) -> bool:
            if failures and message.text == "after a failure":
                raise failures.pop()
            return bool(await store_insert(message))

        monkeypatch.setattr(gateway.store.inbound, "insert", flaky_insert)
        refused = await fake.post_signed(session, url, failed)
        retried = await fake.post_signed(
            session, url, failed, retry_num=1, retry_reason="http_error"
        )
        # generous waits: fifty turns are running, and the machine may be loaded
        await fake.wait_for("chat.postMessage", channel="D0002", timeout=20.0)
        await fake.wait_for("chat.postMessage", channel="D0001", timeout=20.0)
    assert (first.status, retry.status) == (200, 200)
    # Slack's contract is the 3 s bound, and it must hold on a busy machine; the local
    # p99 < 300 ms figure is measured where timing is the point (bench), so here only the
    # median must sit well inside it (one slow sample on a loaded CI is not a regression)
    assert max(acks) < 3.0 and pct(acks, 50) < 0.3, acks
    assert (refused.status, retried.status) == (500, 200)
    texts = user_texts(provider)
    assert texts.count("slow question") == 1  # exactly one processing per event_id
    assert texts.count("after a failure") == 1  # the retry after a real failure is processed


async def test_a_retry_after_a_restart_is_dropped_by_the_gateways_dedupe(
    fake: FakeSlack, running: Any, session: aiohttp.ClientSession
) -> None:
    provider = ScriptedProvider(["first answer"])
    body = fake.event("dm_message")
    async with running(provider, **HTTP) as (gateway, _channel):
        assert (await fake.post_signed(session, events_url(gateway), body)).status == 200
        await fake.wait_for("chat.postMessage")
        await idle(gateway)
    async with running(provider, **HTTP) as (gateway, _channel):
        retry = await fake.post_signed(
            session, events_url(gateway), body, retry_num=2, retry_reason="http_timeout"
        )
        await idle(gateway)
    assert retry.status == 200
    assert len(provider.requests) == 1 and len(fake.method_calls("chat.postMessage")) == 1


async def test_a_mentions_twin_event_after_a_restart_is_not_answered_again(
    fake: FakeSlack, running: Any, session: aiohttp.ClientSession
) -> None:
    # Slack sends a channel mention as `message` and as `app_mention`, each under its own
    # event_id. When the process stops between the two (or they reach two replicas), the
    # second must still be recognised as the message already stored.
    provider = ScriptedProvider(["Paris.", "Paris again."])
    message = fake.event("channel_message")
    mention = same_message(message, fake.event("app_mention"))
    async with running(provider, **HTTP) as (gateway, _channel):
        assert (await fake.post_signed(session, events_url(gateway), message)).status == 200
        await fake.wait_for("chat.postMessage", channel="C0001")
        await idle(gateway)
    async with running(provider, **HTTP) as (gateway, _channel):
        late = await fake.post_signed(
            session, events_url(gateway), mention, retry_num=1, retry_reason="http_timeout"
        )
        await idle(gateway)
    assert late.status == 200
    assert user_texts(provider) == ["what is the capital of France?"]
    assert len(fake.method_calls("chat.postMessage")) == 1
