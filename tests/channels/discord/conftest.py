"""Fixtures: a fake Discord, and the real Gateway with a discord channel pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import discord.gateway
import discord.http
import pytest
import yarl

from bot.channel_configs.discord import DISCORD_API, DISCORD_GATEWAY
from bot.gateway import Gateway
from bot.providers.base import ChatEvent, ChatRequest, Provider, TextDelta
from channels.discord import DiscordChannel
from tests.fakes.discord import FakeDiscord

TOKEN_ENV = "DECAPOD_TEST_DISCORD_TOKEN"


def pings_nobody(allowed_mentions: dict[str, Any] | None) -> bool:
    """Discord pings only what allowed_mentions lets through; without it, everything."""
    if allowed_mentions is None:
        return False
    listed = allowed_mentions.get("users") or allowed_mentions.get("roles")
    return (
        allowed_mentions.get("parse") == []
        and not listed
        and not allowed_mentions.get("replied_user")
    )


def message_bodies(fake: FakeDiscord) -> list[dict[str, Any]]:
    """The JSON of every message the bot created or edited (interaction callbacks included)."""
    bodies = []
    for call in fake.calls:
        body = call.body
        if isinstance(body, dict) and call.path.endswith("/callback"):
            body = body.get("data")
        if isinstance(body, dict) and "content" in body:
            bodies.append(body)
    return bodies


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval_s=1.0) as fake:
        monkeypatch.setenv(TOKEN_ENV, fake.token)
        yield fake
    for body in message_bodies(fake):
        assert pings_nobody(body.get("allowed_mentions")), body
    # the channel pointed discord.py's process-wide URLs at the fake only while it ran
    assert discord.http.Route.BASE == DISCORD_API
    assert yarl.URL(DISCORD_GATEWAY) == discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY


def channel_table(fake: FakeDiscord, **overrides: Any) -> dict[str, Any]:
    """The `[channels.discord]` table of a channel on the fake; `overrides` replace its keys."""
    return {
        "type": "discord",
        "token_env": TOKEN_ENV,
        "api_base_url": fake.api_base,
        "gateway_url": fake.gateway_url,
        **overrides,
    }


@pytest.fixture
def discord_config(make_config: Any, fake: FakeDiscord) -> Callable[..., Any]:
    """A config with one discord channel on the fake; keyword arguments override its keys."""

    def build(**channel: Any) -> Any:
        access = {"dm_policy": "open", "groups": {"*": {}}}
        return make_config(
            channels={"discord": channel_table(fake, **{"access": access, **channel})}
        )

    return build


def piece(i: int) -> str:
    # long enough that the gateway's stream redactor (which releases text in batches of
    # 64 characters) lets the answer out while it is still being written
    return f"part {i:02d} of a long answer. "


def full(count: int) -> str:
    return "".join(piece(i) for i in range(count))


def slow_pieces(count: int, gap: float) -> Callable[[ChatRequest], AsyncIterator[ChatEvent]]:
    """A model that writes `full(count)` one piece every `gap` seconds."""

    async def answer(request: ChatRequest) -> AsyncIterator[ChatEvent]:
        for i in range(count):
            await asyncio.sleep(gap)
            yield TextDelta(piece(i))

    return answer


@asynccontextmanager
async def running(config: Any, provider: Provider) -> AsyncIterator[Gateway]:
    async with Gateway(config, provider=provider) as gateway:
        yield gateway


def channel_of(gateway: Gateway) -> DiscordChannel:
    channel = gateway.channels["discord"]
    assert isinstance(channel, DiscordChannel)
    return channel


async def settle(gateway: Gateway, timeout: float = 30.0) -> None:
    """Until no turn is running or queued."""

    async def idle() -> None:
        while gateway.sessions.active or gateway.sessions.queue_depth:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(idle(), timeout)
