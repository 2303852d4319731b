"""Slack's inbound routing, with slack-bolt loaded after ready.

Bolt routes every event, slash command and button press to the channel's handlers, but the
start uses none of it: it checks the bot token (auth.test, through slack_sdk's AsyncWebClient)
and opens Socket Mode (slack_sdk's aiohttp client). Bolt's packages import its synchronous
`App`, `WebClient`, OAuth flow and their SQLite stores along with the async app (~220 modules,
~70-100 ms of CPU, most of what the Slack adapter cost the start), and no import path of the
async app leaves them out. So Bolt is imported with the first request that needs it, in a
worker thread (the event loop keeps answering meanwhile), and the app is built then; requests
that arrive meanwhile wait for it. Whether Bolt is installed is still checked when the adapter
is imported, so a start without it fails as before.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp

#: what routing a request needs: the app, HTTP mode's request and response, Socket Mode's
BOLT_MODULES = (
    "slack_bolt.async_app",
    "slack_bolt.request.async_request",
    "slack_bolt.adapter.aiohttp",
    "slack_bolt.adapter.socket_mode.async_internals",
)
#: as Bolt's AsyncSocketModeHandler sets it (slack_sdk's own default is 5 s)
PING_INTERVAL_S = 10.0

if importlib.util.find_spec("slack_bolt") is None:  # found without importing it
    raise ImportError("No module named 'slack_bolt'", name="slack_bolt")


class LazyBolt:
    """The channel's Bolt app, imported and built by the first request that needs it."""

    def __init__(self, build: Callable[[], AsyncApp]) -> None:
        self._build = build
        self._app: AsyncApp | None = None
        self._importing: asyncio.Future[None] | None = None

    @property
    def loaded(self) -> bool:
        return self._app is not None

    async def app(self) -> AsyncApp:
        if self._app is None:
            if self._importing is None:  # once, whoever asks first (a failure stays)
                self._importing = asyncio.ensure_future(asyncio.to_thread(_import_bolt))
            await asyncio.shield(self._importing)
            if self._app is None:
                self._app = self._build()
        return self._app


def _import_bolt() -> None:
    for module in BOLT_MODULES:
        importlib.import_module(module)


class SocketReceiver:
    """Bolt's AsyncSocketModeHandler without Bolt: slack_sdk's aiohttp Socket Mode client,
    whose requests go through the app once it is loaded, answered as that handler answers."""

    def __init__(
        self, bolt: LazyBolt, app_token: str, web_client: AsyncWebClient, logger: logging.Logger
    ) -> None:
        self._bolt = bolt
        self.client = SocketModeClient(
            app_token=app_token,
            logger=logger,
            web_client=web_client,
            ping_interval=PING_INTERVAL_S,
        )
        self.client.socket_mode_request_listeners.append(self._handle)

    async def connect(self) -> None:
        await self.client.connect()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        await self.client.close()  # type: ignore[no-untyped-call]

    async def _handle(self, client: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
        started = time.time()
        app = await self._bolt.app()
        # imported with the app, above
        from slack_bolt.adapter.socket_mode.async_internals import (
            run_async_bolt_app,
            send_async_response,
        )

        response = await run_async_bolt_app(app, request)
        await send_async_response(client, request, response, started)
