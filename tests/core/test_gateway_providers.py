"""The provider chain inside the gateway: Anthropic with tools, and failover across restarts of
the primary server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

# The SDKs load here, before any test's clock starts: on a busy machine the import alone
# outlasts a reply's wait.
import anthropic  # noqa: F401
import openai  # noqa: F401
import pytest

from bot.gateway import Gateway
from bot.providers.base import ToolCall
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, Reply


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIMARY_KEY", "sk-primary-test")
    monkeypatch.setenv("FALLBACK_KEY", "sk-fallback-test")


async def test_anthropic_provider_through_the_gateway_with_tool_use(make_config: Any) -> None:
    async with FakeLLM() as fake:
        fake.push(
            Reply(tool_calls=[ToolCall("toolu_1", "current_time", '{"zone": "Europe/Berlin"}')]),
            Reply(text="It is evening in Berlin.", cache_read_tokens=5),
        )
        config = make_config(
            providers={
                "claude": {
                    "type": "anthropic",
                    "base_url": fake.base_url,
                    "api_key_env": "PRIMARY_KEY",
                }
            },
            models={"chat": ["claude:claude-test"]},
        )
        channel = RecordingChannel(console=True)
        async with Gateway(config, channels={"test": channel}) as gw:
            await channel.push("time in Berlin?")
            assert await channel.wait_for_messages(1) == ["It is evening in Berlin."]
            await _until(lambda: gw.sessions.active == 0)
            session = gw.sessions.get("test:dm:u1")
            rows = await gw.store.turns.for_session(session.row.id)  # type: ignore[union-attr]
        first, second = fake.calls(path="/v1/messages")
        assert first.body["system"] and first.body["tools"][0]["input_schema"]["type"] == "object"
        result = second.body["messages"][-1]["content"][0]
        assert result["type"] == "tool_result" and "Europe/Berlin" in result["content"]
        assert rows[-1]["cache_read_tokens"] == 5 and rows[-1]["provider"] == "claude"


async def test_chat_keeps_answering_while_the_primary_is_down_and_returns_to_it(
    make_config: Any,
) -> None:
    primary, fallback = FakeLLM(), FakeLLM()
    await primary.start()
    await fallback.start()
    port = primary.port
    primary.default_text = "from primary"
    fallback.default_text = "from fallback"
    config = make_config(
        providers={
            "primary": {
                "base_url": f"http://127.0.0.1:{port}/v1",
                "api_key_env": "PRIMARY_KEY",
                "health_probe": False,
            },
            "fallback": {
                "base_url": fallback.base_url + "/v1",
                "api_key_env": "FALLBACK_KEY",
                "health_probe": False,
            },
        },
        models={
            "chat": ["primary:p", "fallback:f"],
            "failure_threshold": 1,
            "base_cooldown_s": 0.5,
            "max_cooldown_s": 1,
        },
    )
    channel = RecordingChannel(console=True)
    try:
        async with Gateway(config, channels={"test": channel}):
            await channel.push("one")
            assert (await channel.wait_for_messages(1))[-1] == "from primary"
            await primary.stop()
            await channel.push("two")
            assert (await channel.wait_for_messages(2))[-1] == "from fallback"
            await channel.push("three")  # the breaker is open: straight to the fallback
            assert (await channel.wait_for_messages(3))[-1] == "from fallback"
            primary = FakeLLM()
            primary.default_text = "from primary"
            await primary.start(port=port)
            await asyncio.sleep(1.2)  # past the cooldown: one probe turn goes to the primary
            await channel.push("four")
            assert (await channel.wait_for_messages(4))[-1] == "from primary"
    finally:
        await primary.stop()
        await fallback.stop()


async def test_provider_state_is_in_health_and_metrics(make_config: Any) -> None:
    async with FakeLLM() as fake:
        config = make_config(
            http={"enabled": True, "port": 0},
            providers={
                "p": {
                    "base_url": fake.base_url + "/v1",
                    "api_key_env": "PRIMARY_KEY",
                    "health_probe": False,
                }
            },
            models={"chat": ["p:m"]},
        )
        async with Gateway(config) as gw:
            # prometheus-client loads with the first scrape or message, after ready
            assert not {"instruments", "registry"} & vars(gw.metrics).keys()
            url = f"http://127.0.0.1:{gw.http.port}"
            async with aiohttp.ClientSession() as http:
                async with http.get(url + "/health") as resp:
                    body = await resp.json()
                async with http.get(url + "/metrics") as resp:
                    metrics = await resp.text()
    assert body["providers"][0]["name"] == "p:m" and body["providers"][0]["state"] == "closed"
    # the first scrape shows every instrument, used yet or not
    assert "# TYPE decapod_turns_total counter" in metrics
    assert "decapod_active_turns 0.0" in metrics
    assert 'decapod_provider_breaker_state{entry="p:m"} 0.0' in metrics
    assert "decapod_provider_calls_total" in metrics


async def _until(predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_provider_pool_is_sized_to_the_turns_the_gateway_runs(make_config: Any) -> None:
    async with FakeLLM() as fake:
        config = make_config(
            providers={"local": {"base_url": fake.base_url + "/v1"}},
            models={"chat": ["local:m"]},
            gateway={"max_concurrent_turns": 300},
        )
        async with Gateway(config, channels={"test": RecordingChannel(console=True)}) as gw:
            assert gw.providers is not None
            assert gw.providers.providers["local"].pool_size == 300
