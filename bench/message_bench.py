"""P1: time per message (inbound in -> reply sent) through the real openai SDK against a fake
LLM answering at once; one session. P2: throughput over 1,000 sessions.

The fake LLM runs in its own process (bench/fake_server.py), as a real model server would;
`run` takes one already running (the one the peer is measured against) or starts its own.
Every reply is checked: a failed turn answers fast, and must not count as a fast turn."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import FakeLLMProcess, bench_config, median, pct
from bench.load import CountingChannel
from bot.gateway import Gateway
from bot.heap import settle_after_start

WARM_UP = 20


async def _p1(base_url: str, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        channel = CountingChannel()
        config = bench_config(Path(tmp), base_url)
        async with Gateway(config, channels={"bench": channel}) as gw:
            settle_after_start()  # as `decapod run` does once the gateway is up
            latencies = []
            channel.arm(n + WARM_UP)
            for i in range(n + WARM_UP):
                done = channel.expect("alice")
                start = time.perf_counter()
                await gw.handle_inbound(channel.inbound(f"message {i}", "alice"))
                end = await asyncio.wait_for(done, 30)
                if i >= WARM_UP:  # warm-up: imports, first connection, caches
                    latencies.append((end - start) * 1000)
    if channel.failed:
        raise RuntimeError(f"{channel.failed} of {n + WARM_UP} turns failed")
    return {"p50_ms": median(latencies), "p99_ms": pct(latencies, 99), "n": n}


async def _p2(base_url: str, sessions: int, messages: int, processes: int = 1) -> dict[str, Any]:
    """With `processes` > 1 this process receives and stores, and the turns run in that many
    turn processes (`gateway.turn_processes`), their replies sent back through it."""
    with tempfile.TemporaryDirectory() as tmp:
        channel = CountingChannel()
        config = bench_config(Path(tmp), base_url, gateway={"turn_processes": processes})
        async with Gateway(config, channels={"bench": channel}) as gw:
            settle_after_start()  # as `decapod run` does once the gateway is up
            rounds = max(1, messages // sessions)
            start = time.perf_counter()
            for r in range(rounds):
                done = channel.arm(sessions)
                for s in range(sessions):
                    await gw.handle_inbound(channel.inbound(f"m{r}", f"s{s}"))
                await asyncio.wait_for(done.wait(), 300)
                if channel.failed:
                    raise RuntimeError(f"{channel.failed} of {sessions} turns failed")
            elapsed = time.perf_counter() - start
    return {"msgs_per_s": rounds * sessions / elapsed, "sessions": sessions, "processes": processes}


@contextlib.contextmanager
def _llm(fake: FakeLLMProcess | None) -> Iterator[FakeLLMProcess]:
    if fake is not None:
        yield fake
    else:
        with FakeLLMProcess() as own:
            yield own


def run(
    quick: bool = False, fake: FakeLLMProcess | None = None, figures: tuple[str, ...] = ("P1", "P2")
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with _llm(fake) as llm:
        if "P1" in figures:
            out["P1"] = asyncio.run(_p1(llm.base_url, 100 if quick else 500))
        if "P2" in figures:
            n = 1000 if quick else 3000
            out["P2"] = asyncio.run(_p2(llm.base_url, 1000, n))
            out["P2 2 processes"] = asyncio.run(_p2(llm.base_url, 1000, n, processes=2))
    return out


if __name__ == "__main__":
    print(run())
