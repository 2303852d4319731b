"""Runs inside nanobot's own environment (never the project's): time N messages through
nanobot in-process against the fake LLM, and print one JSON line.

    python nb_inproc.py sdk|bus N [TEXT]

sdk: Nanobot.from_config(...).run(), the in-process SDK path (AgentLoop.process_direct).
bus: AgentLoop.run() consuming InboundMessage from the MessageBus, the reply read from the
     outbound queue: the path a chat channel uses.

The config is ~/.nanobot/config.json (HOME is a throwaway folder the caller set up).
Adapted from the harness that produced nanobot's published figures.
"""

import asyncio
import json
import os
import statistics
import sys
import time

MODE = sys.argv[1] if len(sys.argv) > 1 else "sdk"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 20
TEXT = sys.argv[3] if len(sys.argv) > 3 else ""
CFG = os.path.expanduser("~/.nanobot/config.json")


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1.0


async def sdk_mode():
    from nanobot import Nanobot

    bot = Nanobot.from_config(CFG)
    lat = []
    try:
        for i in range(N):
            s = time.perf_counter()
            key = "bench:prompt" if TEXT else "bench:sdk"  # a given text starts afresh
            await bot.run(TEXT or f"message {i}: say pong", session_key=key)
            lat.append(time.perf_counter() - s)
    finally:
        await bot.aclose()
    return lat


async def bus_mode():
    from nanobot.agent.loop import AgentLoop
    from nanobot.agent.tools.registry import ToolRegistry
    from nanobot.bus.events import InboundMessage
    from nanobot.bus.queue import MessageBus
    from nanobot.config.loader import load_config
    from nanobot.providers.factory import make_provider

    config = load_config()
    bus = MessageBus()
    loop = AgentLoop.from_config(
        config, bus, provider=make_provider(config), tool_registry=ToolRegistry()
    )
    task = asyncio.create_task(loop.run())
    lat = []
    try:
        for i in range(N):
            s = time.perf_counter()
            await bus.publish_inbound(
                InboundMessage(
                    channel="fakechat", sender_id="u1", chat_id="c1", content=TEXT or f"message {i}"
                )
            )
            while True:
                out = await asyncio.wait_for(bus.consume_outbound(), timeout=60)
                if out.event is None and out.content:
                    break
            lat.append(time.perf_counter() - s)
    finally:
        loop.stop()
        task.cancel()
        try:
            await task
        except BaseException:
            pass
    return lat


def main():
    started = time.perf_counter()
    lat = asyncio.run(sdk_mode() if MODE == "sdk" else bus_mode())
    ms = sorted(x * 1000 for x in lat)
    rest = [x * 1000 for x in lat[1:]] or ms
    summary = {
        "mode": MODE,
        "n": len(ms),
        "first_ms": round(lat[0] * 1000, 2),
        "median_ms": round(statistics.median(rest), 2),
        "p90_ms": round(sorted(rest)[max(0, int(0.9 * len(rest)) - 1)], 2),
        "total_s": round(time.perf_counter() - started, 2),
        "rss_end_mb": round(rss_mb(), 1),
    }
    print("SUMMARY " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
