"""Fixtures: the fake Slack, tokens in the environment, and a real Gateway with the Slack
channel pointed at the fake (Socket Mode or HTTP Events API)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.messages import InboundMessage
from bot.providers.base import Provider
from channels.slack import SlackChannel
from tests.fakes.slack import FakeSlack

OPEN_ACCESS: dict[str, Any] = {"dm_policy": "open", "groups": {"C0001": {}}}


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        monkeypatch.setenv("SLACK_BOT_TOKEN", fake.bot_token)
        monkeypatch.setenv("SLACK_APP_TOKEN", fake.app_token)
        monkeypatch.setenv("SLACK_SIGNING_SECRET", fake.signing_secret)
        yield fake


def slack_settings(fake: FakeSlack, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"type": "slack", "api_url": fake.api_url, "access": OPEN_ACCESS}
    settings.update(extra)
    return settings


@pytest.fixture
def running(make_config: Any, fake: FakeSlack) -> Callable[..., Any]:
    """`async with running(provider, mode="http") as (gateway, channel): ...`"""

    @asynccontextmanager
    async def run(
        provider: Provider, *, http: bool = False, **settings: Any
    ) -> AsyncIterator[tuple[Gateway, SlackChannel]]:
        sections: dict[str, Any] = {
            "channels": {"slack": slack_settings(fake, **settings)},
            "gateway": {"shutdown_grace_s": 0.5},
        }
        if http:
            sections["http"] = {"enabled": True, "port": 0}
        async with Gateway(make_config(**sections), provider=provider) as gateway:
            channel = gateway.channels["slack"]
            assert isinstance(channel, SlackChannel)
            if not http:
                await fake.wait_connected()
            yield gateway, channel

    return run


def events_url(gateway: Gateway) -> str:
    return f"http://127.0.0.1:{gateway.http.port}/slack/events"


async def until(condition: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def idle(gateway: Gateway) -> None:
    await until(lambda: gateway.sessions.active == 0 and not gateway.sessions.queue_depth)


def user_texts(provider: Any) -> list[str]:
    """The last user message of every model request."""
    return [request.messages[-1].content for request in provider.requests]


def spy_on_sink(channel: SlackChannel) -> list[InboundMessage]:
    """Record every message the channel hands to the gateway (stored payloads are cleared
    once handled, so tests look here)."""
    seen: list[InboundMessage] = []
    inner = channel.sink
    assert inner is not None

    async def spy(message: InboundMessage) -> None:
        seen.append(message)
        await inner(message)

    channel.sink = spy
    return seen


def message_key(body: dict[str, Any]) -> str:
    """The inbox key of a message event: its channel and timestamp, whichever event brought it."""
    event = body["event"]
    return f"ts:{event['channel']}:{event['ts']}"
