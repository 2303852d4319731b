"""A gateway on a recording channel whose downloads are files the test made, with the real
OpenAI or Anthropic SDK against the fake LLM server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

# The SDKs load here, before any test's clock starts.
import anthropic  # noqa: F401
import openai  # noqa: F401
import pytest

from bot.gateway import Gateway
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_KEY", "sk-media-test")


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


def providers(fake: FakeLLM, **extra: Any) -> dict[str, Any]:
    return {
        "oa": {"base_url": fake.base_url + "/v1", "api_key_env": "LLM_KEY", "health_probe": False},
        "claude": {"type": "anthropic", "base_url": fake.base_url, "api_key_env": "LLM_KEY"},
        **extra,
    }


@asynccontextmanager
async def running(
    make_config: Callable[..., Any], fake: FakeLLM, **sections: Any
) -> AsyncIterator[tuple[Gateway, RecordingChannel]]:
    sections.setdefault("providers", providers(fake))
    config = make_config(**sections)
    channel = RecordingChannel("test", console=True)
    async with Gateway(config, channels={"test": channel}) as gw:
        yield gw, channel


async def settled(gw: Gateway, channel: str = "test", delivery: str = "d1") -> str | None:
    """The delivery's final status, once no turn runs."""
    async with asyncio.timeout(20):
        while gw.sessions.active:
            await asyncio.sleep(0.01)
    return await gw.store.inbound.status(channel, delivery)
