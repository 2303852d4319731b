"""P1_telegram: time per message through the Telegram adapter in long-polling mode. The fake
Bot API queues an update and wakes the pending getUpdates; the time ends when the fake
receives the reply's sendMessage. The answer comes from the real openai SDK against a fake
LLM that answers at once, so what is measured is python-telegram-bot, the adapter (polling,
storing before confirming, Markdown to HTML, pacing) and the gateway.

One person, one session. The adapter keeps to Telegram's send limits (one message a second
per chat, thirty a second in all); the bench lifts them, or it would measure the pacing.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import bench_config, median, pct
from bot.gateway import Gateway
from tests.fakes.llm import FakeLLM
from tests.fakes.telegram import FakeTelegram

TOKEN_ENV = "BENCH_TELEGRAM_TOKEN"
WARM_UP = 20
CHAT = 42


async def _p1(n: int) -> dict[str, Any]:
    async with FakeLLM() as llm, FakeTelegram() as fake:
        os.environ[TOKEN_ENV] = fake.token
        channel = {
            "type": "telegram",
            "token_env": TOKEN_ENV,
            "api_base_url": fake.base_url,
            "file_base_url": fake.file_base_url,
            "chat_interval_s": 0,
            "messages_per_second": 100_000,
            "access": {"dm_policy": "open"},
        }
        with tempfile.TemporaryDirectory() as tmp:
            config = bench_config(Path(tmp), llm.base_url, channels={"tg": channel})
            async with Gateway(config):
                latencies = []
                for i in range(n + WARM_UP):
                    seen = len(fake.calls_of("sendMessage"))
                    start = time.monotonic()
                    fake.push_private(f"message {i}", user_id=CHAT)
                    await fake.wait_until(lambda s=seen: len(fake.calls_of("sendMessage")) > s)
                    reply = fake.calls_of("sendMessage")[seen]
                    if i >= WARM_UP:  # imports, first connections, caches
                        latencies.append((reply.at - start) * 1000)
    return {"p50_ms": median(latencies), "p99_ms": pct(latencies, 99), "n": n}


def run(quick: bool = False) -> dict[str, Any]:
    return {"P1_telegram": asyncio.run(_p1(100 if quick else 500))}


if __name__ == "__main__":
    print(run())
