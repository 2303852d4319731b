"""P1_discord: time per message through the Discord adapter. The fake Discord dispatches a
MESSAGE_CREATE in a DM; the time ends when the fake receives the reply's
POST /channels/{id}/messages. The answer comes from the real openai SDK against a fake LLM
that answers at once, so what is measured is discord.py, the adapter and the gateway."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import discord.gateway
import discord.http

from bench.common import bench_config, median, pct
from bot.gateway import Gateway
from tests.fakes.discord import ALICE, FakeDiscord
from tests.fakes.llm import FakeLLM

TOKEN_ENV = "BENCH_DISCORD_TOKEN"
WARM_UP = 20


async def _p1(n: int) -> dict[str, Any]:
    saved = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    try:
        async with FakeLLM() as llm, FakeDiscord() as fake:
            os.environ[TOKEN_ENV] = fake.token
            channel = {
                "type": "discord",
                "token_env": TOKEN_ENV,
                "api_base_url": fake.api_base,
                "gateway_url": fake.gateway_url,
                "access": {"dm_policy": "open"},
            }
            with tempfile.TemporaryDirectory() as tmp:
                config = bench_config(Path(tmp), llm.base_url, channels={"discord": channel})
                async with Gateway(config):
                    replies = f"/channels/{fake.dm_channel_id(ALICE)}/messages"
                    latencies = []
                    for i in range(n + WARM_UP):
                        start = time.monotonic()
                        await fake.send_message(f"message {i}", dm=True)
                        reply = await fake.wait_for("POST", replies, count=i + 1)
                        if i >= WARM_UP:  # imports, first connections, caches
                            latencies.append((reply.at - start) * 1000)
    finally:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = saved
    return {"p50_ms": median(latencies), "p99_ms": pct(latencies, 99), "n": n}


def run(quick: bool = False) -> dict[str, Any]:
    return {"P1_discord": asyncio.run(_p1(100 if quick else 500))}


if __name__ == "__main__":
    print(run())
