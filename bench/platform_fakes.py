"""The fake Telegram, Slack and Discord servers (tests/fakes/) in a process of their own, so a
bench can start `decapod run` (or a gateway in the bench process) against them without the
fakes' own work or memory counting as Decapod's.

    python -m bench.platform_fakes        prints one JSON line: where each fake listens, the
                                          tokens, and the control port; serves until killed

Control (127.0.0.1:<control>):

    POST /telegram/push?first=1&count=1000&text=hi   one private message from each user
                                                    first .. first+count-1
    GET  /telegram/sent                             {"sendMessage": n, "editMessageText": n}
                                                    since the last call; forgets what it counted
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections import Counter
from typing import Any

from aiohttp import web

from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram

TELEGRAM_TOKEN_ENV = "BENCH_TELEGRAM_TOKEN"
DISCORD_TOKEN_ENV = "BENCH_DISCORD_TOKEN"


def channels_toml(info: dict[str, Any], *, stream: bool = True) -> str:
    """The three `[channels.*]` tables of a config.toml pointed at the fakes in `info`."""
    flag = "true" if stream else "false"
    return (
        f'\n[channels.tg]\ntype = "telegram"\ntoken_env = "{TELEGRAM_TOKEN_ENV}"\n'
        f'api_base_url = "{info["telegram"]["api_base_url"]}"\n'
        f'file_base_url = "{info["telegram"]["file_base_url"]}"\n'
        f"stream = {flag}\n"
        f'\n[channels.slack]\ntype = "slack"\napi_url = "{info["slack"]["api_url"]}"\n'
        f"stream = {flag}\n"
        f'\n[channels.discord]\ntype = "discord"\ntoken_env = "{DISCORD_TOKEN_ENV}"\n'
        f'api_base_url = "{info["discord"]["api_base_url"]}"\n'
        f'gateway_url = "{info["discord"]["gateway_url"]}"\n'
        f"stream = {flag}\n"
    )


def channels_env(info: dict[str, Any]) -> dict[str, str]:
    """The environment the channels of `channels_toml` read their tokens from."""
    return {
        TELEGRAM_TOKEN_ENV: info["telegram"]["token"],
        "SLACK_BOT_TOKEN": info["slack"]["bot_token"],
        "SLACK_APP_TOKEN": info["slack"]["app_token"],
        "SLACK_SIGNING_SECRET": info["slack"]["signing_secret"],
        DISCORD_TOKEN_ENV: info["discord"]["token"],
    }


async def _serve() -> None:
    # a client that gives up on a request (a typing notice cancelled by the reply) is normal
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    telegram, slack, discord = FakeTelegram(), FakeSlack(), FakeDiscord()
    await telegram.start()
    await slack.start()
    await discord.start()
    counted = Counter[str]()

    async def push(request: web.Request) -> web.Response:
        first = int(request.query.get("first", "1"))
        count = int(request.query.get("count", "1"))
        text = request.query.get("text", "hello")
        for user in range(first, first + count):
            telegram.push_private(text, user_id=user)
        return web.json_response({"pushed": count})

    async def sent(_request: web.Request) -> web.Response:
        # what the bot sent since the last look; the fake's own records are dropped so a long
        # run does not grow this process
        for call in telegram.calls:
            counted[call.method] += 1
        telegram.calls.clear()
        telegram.messages.clear()
        telegram.sent_order.clear()
        telegram.offsets.clear()
        telegram._sent.clear()
        answer = {m: counted[m] for m in ("sendMessage", "editMessageText")}
        counted.clear()
        return web.json_response(answer)

    control = web.Application()
    control.router.add_post("/telegram/push", push)
    control.router.add_get("/telegram/sent", sent)
    runner = web.AppRunner(control, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    info = {
        "control_port": runner.addresses[0][1],
        "telegram": {
            "api_base_url": telegram.base_url,
            "file_base_url": telegram.file_base_url,
            "token": telegram.token,
        },
        "slack": {
            "api_url": slack.api_url,
            "bot_token": slack.bot_token,
            "app_token": slack.app_token,
            "signing_secret": slack.signing_secret,
        },
        "discord": {
            "api_base_url": discord.api_base,
            "gateway_url": discord.gateway_url,
            "token": discord.token,
        },
    }
    print(json.dumps(info), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    for fake in (telegram, slack, discord):
        await fake.stop()


if __name__ == "__main__":
    asyncio.run(_serve())
