"""P1: time per message (inbound in -> reply sent) through the real openai SDK against a fake
LLM answering at once; one session. P2: throughput over 1,000 sessions."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import TimingChannel, bench_config, median, pct
from bot.gateway import Gateway
from tests.fakes.llm import FakeLLM


async def _p1(n: int) -> dict[str, Any]:
    async with FakeLLM() as fake:
        with tempfile.TemporaryDirectory() as tmp:
            channel = TimingChannel()
            config = bench_config(Path(tmp), fake.base_url)
            async with Gateway(config, channels={"bench": channel}) as gw:
                latencies = []
                for i in range(n + 20):
                    done = channel.expect("alice")
                    start = time.perf_counter()
                    await gw.handle_inbound(channel.inbound(f"message {i}", "alice"))
                    end = await done
                    if i >= 20:  # warm-up: imports, first connection, caches
                        latencies.append((end - start) * 1000)
    return {"p50_ms": median(latencies), "p99_ms": pct(latencies, 99), "n": n}


async def _p2(sessions: int, messages: int) -> dict[str, Any]:
    async with FakeLLM() as fake:
        with tempfile.TemporaryDirectory() as tmp:
            channel = TimingChannel()
            config = bench_config(Path(tmp), fake.base_url)
            async with Gateway(config, channels={"bench": channel}) as gw:
                rounds = max(1, messages // sessions)
                start = time.perf_counter()
                for r in range(rounds):
                    waits = [channel.expect(f"s{s}") for s in range(sessions)]
                    for s in range(sessions):
                        await gw.handle_inbound(channel.inbound(f"m{r}", f"s{s}"))
                    await asyncio.gather(*waits)
                elapsed = time.perf_counter() - start
    return {"msgs_per_s": rounds * sessions / elapsed, "sessions": sessions}


def run(quick: bool = False) -> dict[str, Any]:
    p1 = asyncio.run(_p1(100 if quick else 500))
    p2 = asyncio.run(_p2(1000, 1000 if quick else 3000))
    return {"P1": p1, "P2": p2}


if __name__ == "__main__":
    print(run())
