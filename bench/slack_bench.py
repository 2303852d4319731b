"""P1_slack: time per message through the Slack adapter in Socket Mode. The fake Slack pushes
an events_api envelope over the websocket; the time ends when the fake receives the reply's
chat.postMessage. The answer comes from the real openai SDK against a fake LLM that answers
at once, so what is measured is slack-bolt, slack-sdk, the adapter and the gateway.

Each message comes from its own DM: Slack allows one post a second per channel, and the
adapter keeps to that, so messages in one DM would measure the pacing, not the latency.
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
from tests.fakes.slack import FakeSlack

BOT_TOKEN_ENV, APP_TOKEN_ENV = "BENCH_SLACK_BOT_TOKEN", "BENCH_SLACK_APP_TOKEN"
WARM_UP = 20


async def _p1(n: int) -> dict[str, Any]:
    async with FakeLLM() as llm, FakeSlack() as fake:
        os.environ[BOT_TOKEN_ENV], os.environ[APP_TOKEN_ENV] = fake.bot_token, fake.app_token
        channel = {
            "type": "slack",
            "bot_token_env": BOT_TOKEN_ENV,
            "app_token_env": APP_TOKEN_ENV,
            "api_url": fake.api_url,
            "access": {"dm_policy": "open"},
        }
        with tempfile.TemporaryDirectory() as tmp:
            config = bench_config(Path(tmp), llm.base_url, channels={"slack": channel})
            async with Gateway(config):
                await fake.wait_connected()
                latencies = []
                for i in range(n + WARM_UP):
                    chat = f"D{i:06d}"
                    body = fake.event("dm_message", channel=chat, user=f"U{i:06d}", text=f"m {i}")
                    seen = len(fake.calls)
                    start = time.monotonic()
                    await fake.socket_send("events_api", body)
                    await fake.wait_for("chat.postMessage", start=seen, channel=chat)
                    reply = next(
                        c
                        for c in fake.calls[seen:]
                        if c.params.get("channel") == chat and c.method == "chat.postMessage"
                    )
                    if i >= WARM_UP:  # imports, first connections, caches
                        latencies.append((reply.at - start) * 1000)
    return {"p50_ms": median(latencies), "p99_ms": pct(latencies, 99), "n": n}


def run(quick: bool = False) -> dict[str, Any]:
    return {"P1_slack": asyncio.run(_p1(100 if quick else 500))}


if __name__ == "__main__":
    print(run())
