"""P4's floor: a bare process that imports what a gateway with Telegram, Slack and Discord
cannot start without (pydantic for its config, aiohttp for its HTTP server, the three
platform SDKs as the adapters import them) and then answers GET /health on 127.0.0.1. No
config, no store, no connection to any platform: the least any Python gateway on these SDKs
spends before /health can say ok, on this machine, in the same run.

    python -m bench.startup_floor PORT
"""

from __future__ import annotations

import asyncio
import sys


async def _serve(port: int) -> None:
    from aiohttp import web

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def main() -> None:
    import importlib

    port = int(sys.argv[1])
    # first: PTB and httpx as the Telegram adapter imports them (without their optional parts)
    importlib.import_module("channels.telegram_lean")
    for module in (
        "pydantic",
        "telegram.request",
        # slack-bolt routes events and loads with the first one (channels/slack_dispatch.py)
        "slack_sdk.web.async_client",
        "slack_sdk.socket_mode.aiohttp",
        "discord",
    ):
        importlib.import_module(module)
    asyncio.run(_serve(port))


if __name__ == "__main__":
    main()
