"""slack-bolt loaded after the start (channels/slack_dispatch.py): a failed import is said,
shown by health and tried again; requests that wait for it are answered within Slack's
3 s counted from when they were received, share one import, and are dropped when the
channel stops meanwhile. The real SDKs against the fake Slack."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.channel_configs.slack import SlackChannelConfig
from bot.config_base import ChannelAccessConfig
from bot.messages import InboundMessage
from bot.providers.testing import ScriptedProvider
from channels import slack_dispatch
from channels.slack import SlackChannel
from tests.channels.slack.conftest import events_url
from tests.fakes.slack import FakeSlack

REAL_IMPORT = slack_dispatch._import_bolt


class HeldImport:
    """Bolt's import in the worker thread, held until `release` (and counted)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = 0

    def __call__(self) -> slack_dispatch.BoltParts:
        self.started += 1
        assert self.gate.wait(60)
        return REAL_IMPORT()

    async def begun(self) -> None:
        async def polled() -> None:
            while self.started == 0:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(polled(), 30)


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> HeldImport:
    """Bolt's import, held until the test releases it."""
    import_ = HeldImport()
    monkeypatch.setattr(slack_dispatch, "_import_bolt", import_)
    return import_


@pytest.fixture
async def channel(fake: FakeSlack, tmp_path: Path) -> AsyncIterator[tuple[SlackChannel, list[str]]]:
    taken: list[str] = []

    async def sink(message: InboundMessage) -> None:
        taken.append(message.text)

    settings = SlackChannelConfig(
        type="slack", api_url=fake.api_url, access=ChannelAccessConfig(dm_policy="open")
    )
    slack = SlackChannel("s", settings, tmp_path)
    await slack.start(sink)
    await fake.wait_connected()
    try:
        yield slack, taken
    finally:
        await slack.stop()


async def test_a_failed_bolt_import_is_said_once_shown_by_health_and_tried_again(
    fake: FakeSlack,
    channel: tuple[SlackChannel, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack, taken = channel
    # installed but not importable: one of the modules routing needs fails to import
    monkeypatch.setitem(sys.modules, "slack_bolt.adapter.aiohttp", None)
    with caplog.at_level(logging.ERROR, "decapod.channels.slack"):
        for text in ("first", "second"):
            body = fake.event("dm_message", text=text)
            assert await fake.socket_send("events_api", body, timeout=3) is None  # Slack retries
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "slack_bolt.adapter.aiohttp" in errors[0].getMessage()
    health = slack.health()
    assert health["running"] is False and "slack_bolt.adapter.aiohttp" in health["error"]
    assert taken == []

    monkeypatch.undo()  # importable again: the next request loads it
    ack = await fake.socket_send("events_api", fake.event("dm_message", text="third"))
    assert ack is not None and taken == ["third"]
    health = slack.health()
    assert health["running"] is True and "error" not in health


async def test_two_requests_on_the_first_load_share_one_import(
    fake: FakeSlack, channel: tuple[SlackChannel, list[str]], held: HeldImport
) -> None:
    _, taken = channel
    acks = [
        asyncio.create_task(fake.socket_send("events_api", fake.event("dm_message", text=text)))
        for text in ("one", "two")
    ]
    await held.begun()
    held.gate.set()
    assert all(ack is not None for ack in await asyncio.gather(*acks))
    assert sorted(taken) == ["one", "two"] and held.started == 1


async def test_after_ready_imports_bolt_in_the_background(
    channel: tuple[SlackChannel, list[str]], held: HeldImport
) -> None:
    slack, _ = channel
    slack.after_ready()  # returns at once: nothing waits for the import
    await held.begun()
    held.gate.set()
    assert slack._bolt is not None
    assert await slack._bolt.app() is not None and held.started == 1


async def test_the_ack_budget_counts_from_when_the_event_was_received(
    fake: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: HeldImport
) -> None:
    budget = 3.0
    monkeypatch.setattr(SlackChannel, "ack_budget_s", budget)
    stored = asyncio.Event()

    async def slow_sink(message: InboundMessage) -> None:
        await stored.wait()  # a store slower than the budget: the ack leaves at its end

    settings = SlackChannelConfig(
        type="slack", api_url=fake.api_url, access=ChannelAccessConfig(dm_policy="open")
    )
    slack = SlackChannel("s", settings, tmp_path)
    await slack.start(slow_sink)
    try:
        loop = asyncio.get_running_loop()
        acked = asyncio.create_task(
            fake.socket_send("events_api", fake.event("dm_message", text="hi"))
        )
        await asyncio.sleep(budget)  # Bolt's import takes the whole budget
        released = loop.time()
        held.gate.set()
        assert await acked is not None
        # acknowledged as soon as it was routed: before a budget counted from the release
        # would have ended (the order is what counts, so the margin is a whole budget)
        assert loop.time() < released + budget
    finally:
        stored.set()
        await slack.stop()


async def test_a_request_waiting_for_bolt_when_the_channel_stops_is_dropped(
    channel: tuple[SlackChannel, list[str]], held: HeldImport
) -> None:
    slack, _ = channel
    bolt = slack._bolt
    assert bolt is not None
    waiting = asyncio.create_task(bolt.app())
    await held.begun()
    await slack.stop()
    held.gate.set()
    assert await waiting is None


async def test_a_request_waiting_for_bolt_while_the_channel_stops_delivers_nothing(
    fake: FakeSlack,
    channel: tuple[SlackChannel, list[str]],
    held: HeldImport,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slack, taken = channel
    acked = asyncio.create_task(fake.socket_send("events_api", fake.event("dm_message")))
    await held.begun()
    bolt, socket = slack._bolt, slack._socket
    assert bolt is not None and socket is not None
    close_socket = socket.close

    async def close_once_bolt_loaded() -> None:
        # Bolt finishes loading while stop is still closing things: the waiting request
        # wakes in the middle of stop
        held.gate.set()
        await asyncio.wait_for(asyncio.shield(bolt._import()), 30)
        await asyncio.sleep(0.2)
        await close_socket()

    monkeypatch.setattr(socket, "close", close_once_bolt_loaded)
    await slack.stop()
    assert await acked is None and taken == []


async def test_bolt_loads_without_its_private_socket_mode_helpers(
    fake: FakeSlack, channel: tuple[SlackChannel, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, taken = channel
    # older slack-bolt versions name these differently or lack them
    monkeypatch.setitem(sys.modules, "slack_bolt.adapter.socket_mode.internals", None)
    monkeypatch.setitem(sys.modules, "slack_bolt.adapter.socket_mode.async_internals", None)
    body = fake.event("dm_message", text="retried")
    ack = await fake.socket_send("events_api", body, retry_attempt=2, retry_reason="timeout")
    assert ack is not None and taken == ["retried"]


def test_socket_retry_headers_are_the_http_ones() -> None:
    from slack_sdk.socket_mode.request import SocketModeRequest

    retried = SocketModeRequest(
        type="events_api", envelope_id="e", payload={}, retry_attempt=2, retry_reason="timeout"
    )
    assert slack_dispatch.socket_retry_headers(retried) == {
        "x-slack-retry-num": "2",
        "x-slack-retry-reason": "timeout",
    }
    first = SocketModeRequest(type="events_api", envelope_id="e", payload={})
    assert slack_dispatch.socket_retry_headers(first) is None


async def test_a_socket_mode_follower_loads_bolt_only_when_it_becomes_leader(
    fake: FakeSlack, tmp_path: Path, held: HeldImport
) -> None:
    settings = SlackChannelConfig(
        type="slack", api_url=fake.api_url, access=ChannelAccessConfig(dm_policy="open")
    )
    slack = SlackChannel("s", settings, tmp_path)
    slack.receive_on_start = False  # a replica that does not hold the receiving lock
    await slack.start(lambda message: asyncio.sleep(0))
    try:
        slack.after_ready()
        await asyncio.sleep(0.3)  # a preload would have begun by now
        assert held.started == 0
        await slack.start_receiving()
        await held.begun()
    finally:
        held.gate.set()
        await slack.stop()


async def test_a_failed_preload_after_stop_logs_nothing(
    channel: tuple[SlackChannel, list[str]],
    held: HeldImport,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack, _ = channel
    bolt = slack._bolt
    assert bolt is not None
    slack.after_ready()
    await held.begun()
    await slack.stop()
    monkeypatch.setitem(sys.modules, "slack_bolt.adapter.aiohttp", None)
    with caplog.at_level(logging.ERROR, "decapod.channels.slack"):
        held.gate.set()
        with pytest.raises(ImportError):
            await asyncio.wait_for(asyncio.shield(bolt._import()), 30)
        await asyncio.sleep(0)
    assert [r for r in caplog.records if r.levelno == logging.ERROR] == []


async def test_the_first_http_request_waits_for_bolt_and_one_that_cannot_load_it_gets_503(
    fake: FakeSlack, running: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = ScriptedProvider(["Hello over HTTP."])
    async with (
        running(provider, http=True, mode="http") as (gateway, slack),
        aiohttp.ClientSession() as session,
    ):
        url = events_url(gateway)
        with monkeypatch.context() as broken:
            broken.setitem(sys.modules, "slack_bolt.adapter.aiohttp", None)
            refused = await fake.post_signed(session, url, fake.event("dm_message"))
            assert refused.status == 503 and slack.health()["running"] is False
        held = HeldImport()
        monkeypatch.setattr(slack_dispatch, "_import_bolt", held)
        first = asyncio.create_task(fake.post_signed(session, url, fake.event("dm_message")))
        await held.begun()
        held.gate.set()
        assert (await first).status == 200
        await fake.wait_for("chat.postMessage", channel="D0001")
        assert slack.health()["running"] is True
