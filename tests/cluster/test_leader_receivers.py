"""Slack's Socket Mode and Discord's gateway on a replica that waits for leadership: the
channel logs in and sends, and its one receiving connection is open only between
`start_receiving` and `stop_receiving` (bot/cluster/node.py calls them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.channel_configs.discord import DiscordChannelConfig
from bot.channel_configs.slack import SlackChannelConfig
from bot.errors import ChannelError
from bot.messages import Conversation, ConversationKind, InboundMessage, OutboundMessage
from channels.discord import DiscordChannel
from channels.slack import SlackChannel
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack

DISCORD_TOKEN_ENV = "DECAPOD_TEST_DISCORD_TOKEN"


async def _sink(message: InboundMessage) -> None:
    return None


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest.fixture
async def slack(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        monkeypatch.setenv("SLACK_BOT_TOKEN", fake.bot_token)
        monkeypatch.setenv("SLACK_APP_TOKEN", fake.app_token)
        yield fake


async def test_slack_socket_mode_opens_only_while_leading(slack: FakeSlack, tmp_path: Path) -> None:
    channel = SlackChannel("s", SlackChannelConfig(type="slack", api_url=slack.api_url), tmp_path)
    assert channel.receives_exclusively()
    channel.receive_on_start = False
    await channel.start(_sink)
    try:
        await asyncio.sleep(0.5)
        assert slack.method_calls("apps.connections.open") == [] and not slack.socket_open
        to = Conversation("s", "C0001", ConversationKind.CHANNEL)
        await channel.send(OutboundMessage(to, "sent by a follower"))
        assert len(slack.method_calls("chat.postMessage")) == 1
        assert channel.health()["running"] is True and channel.health()["receiving"] is False

        await channel.start_receiving()
        await slack.wait_connected()
        assert channel.health()["receiving"] is True
        opened = len(slack.method_calls("apps.connections.open"))

        await channel.stop_receiving()
        await _until(lambda: not slack.socket_open)
        assert channel.health()["receiving"] is False
        await channel.send(OutboundMessage(to, "still sending"))
        assert len(slack.method_calls("chat.postMessage")) == 2
        await asyncio.sleep(0.5)
        assert not slack.socket_open  # the SDK does not open it again by itself
        assert len(slack.method_calls("apps.connections.open")) == opened
    finally:
        await channel.stop()


async def test_slack_socket_mode_connect_timeout_leaves_it_not_receiving(
    slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connect that timed out must not count as receiving: the leader's next
    start_receiving opens Socket Mode again instead of doing nothing."""
    import channels.slack

    monkeypatch.setattr(channels.slack, "CONNECT_TIMEOUT_S", 0.5)
    channel = SlackChannel("s", SlackChannelConfig(type="slack", api_url=slack.api_url), tmp_path)
    channel.receive_on_start = False
    await channel.start(_sink)
    try:
        slack.socket_delay_s = 5.0
        with pytest.raises(ChannelError, match="no Socket Mode connection"):
            await channel.start_receiving()
        assert channel.health()["receiving"] is False

        slack.socket_delay_s = 0.0
        await channel.start_receiving()
        await slack.wait_connected(timeout=10.0)
        assert channel.health()["receiving"] is True
    finally:
        await channel.stop()


def test_slack_events_api_receives_on_every_replica(slack: FakeSlack, tmp_path: Path) -> None:
    settings = SlackChannelConfig(type="slack", api_url=slack.api_url, mode="http")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLACK_SIGNING_SECRET", "s" * 32)
        assert not SlackChannel("s", settings, tmp_path).receives_exclusively()


@pytest.fixture
async def discord_fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval_s=1.0) as fake:
        monkeypatch.setenv(DISCORD_TOKEN_ENV, fake.token)
        yield fake


async def test_discord_opens_its_gateway_only_while_leading(
    discord_fake: FakeDiscord, tmp_path: Path
) -> None:
    fake = discord_fake
    config = DiscordChannelConfig(
        type="discord",
        token_env=DISCORD_TOKEN_ENV,
        api_base_url=fake.api_base,
        gateway_url=fake.gateway_url,
    )
    channel = DiscordChannel("discord", config, tmp_path)
    assert channel.receives_exclusively()
    channel.receive_on_start = False
    await channel.start(_sink)
    try:
        await asyncio.sleep(0.5)
        assert fake.identifies == 0 and not fake.connected
        assert channel.health()["running"] is True and channel.health()["receiving"] is False
        to = Conversation("discord", "1300000000000000001", ConversationKind.CHANNEL)
        await channel.send(OutboundMessage(to, "sent by a follower"))
        assert fake.texts_in("1300000000000000001") == ["sent by a follower"]

        await channel.start_receiving()
        assert fake.connected and fake.identifies == 1
        assert channel.health()["running"] is True and channel.health()["receiving"] is True

        await channel.stop_receiving()
        await _until(lambda: not fake.connected)
        await asyncio.sleep(0.5)
        assert not fake.connected and fake.identifies == 1  # no reconnect of its own
        assert channel.health()["receiving"] is False

        await channel.start_receiving()  # leads again
        assert fake.connected and fake.identifies == 2
    finally:
        await channel.stop()


async def test_a_leader_whose_socket_mode_connection_failed_tries_again(
    slack: FakeSlack, tmp_path: Path, pg_url: str
) -> None:
    """Slack's API refusing the connection once (an outage, a blip) when this replica became
    the leader: it holds the lock, so no other replica receives; it must try again."""
    from bot.cluster.leader import LeaderElection, Role

    channel = SlackChannel("s", SlackChannelConfig(type="slack", api_url=slack.api_url), tmp_path)
    channel.receive_on_start = False
    await channel.start(_sink)
    slack.fail("apps.connections.open", status=200, error="internal_error", retry_after=None)
    election = LeaderElection(
        pg_url,
        None,
        on_elected=channel.start_receiving,
        on_deposed=channel.stop_receiving,
        takeover_s=0.1,
    )
    await election.start()
    try:
        await _until(lambda: len(slack.method_calls("apps.connections.open")) >= 1)
        await slack.wait_connected()
        assert election.role is Role.LEADER
        # refused, then opened: the check by hand and the SDK's own call make two per try
        assert len(slack.method_calls("apps.connections.open")) >= 3
    finally:
        await election.stop()
        await channel.stop()
