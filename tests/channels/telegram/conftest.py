"""Fixtures for the Telegram channel: the fake Bot API, configs pointed at it, payload files."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.errors import StoreError
from bot.messages import InboundMessage
from channels.telegram import TelegramChannel, create
from tests.fakes.telegram import TOKEN, FakeTelegram

PAYLOADS = Path(__file__).parent.parent / "payloads" / "telegram"
TOKEN_ENV = "DECAPOD_TEST_TELEGRAM_TOKEN"
ALICE = 42  # the owner in these configs
GROUP = -1001234567890


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


def channel_table(fake: FakeTelegram, **overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "type": "telegram",
        "token_env": TOKEN_ENV,
        "api_base_url": fake.base_url,
        "file_base_url": fake.file_base_url,
        "access": {"dm_policy": "pairing"},
        # the one-a-second pacing has its own tests; elsewhere it only slows the suite down
        "chat_interval_s": 0.0,
    }
    table.update(overrides)
    return table


@pytest.fixture
def tg_config(make_config: Callable[..., Any], fake: FakeTelegram) -> Callable[..., Any]:
    """A root config whose channel "tg" talks to the fake; Alice (42) is the owner."""

    def build(
        *, gateway: dict[str, Any] | None = None, http: dict[str, Any] | None = None, **channel: Any
    ) -> Any:
        return make_config(
            channels={"tg": channel_table(fake, **channel)},
            gateway={"owners": [f"tg:{ALICE}"], **(gateway or {})},
            http=http or {"enabled": False},
            # the channel is under test here, not the optional parts of the gateway
            sandbox={"backend": "none"},
            memory={"enabled": False},
        )

    return build


async def until(predicate: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def settled(gateway: Any) -> None:
    """Every accepted turn has finished."""
    await until(lambda: gateway.sessions.active == 0 and not gateway.sessions.queue_depth)


class RecordingSink:
    """Stands in for the gateway: records what it is handed; may fail to store."""

    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self.fail = False

    async def __call__(self, message: InboundMessage) -> None:
        if self.fail:
            raise StoreError("disk full")
        self.messages.append(message)


@pytest_asyncio.fixture
async def start_channel(
    fake: FakeTelegram, make_config: Callable[..., Any]
) -> AsyncIterator[Callable[..., Awaitable[TelegramChannel]]]:
    """Start a channel on the fake through `create` (as the gateway does); stopped after."""
    started: list[TelegramChannel] = []

    async def start(sink: Any = None, **overrides: Any) -> TelegramChannel:
        config = make_config(channels={"tg": channel_table(fake, **overrides)})
        channel = create("tg", config.channels["tg"], config)
        await channel.start(sink or RecordingSink())
        started.append(channel)
        return channel

    yield start
    for channel in started:
        await channel.stop()
