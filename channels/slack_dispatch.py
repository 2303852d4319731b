"""Slack's inbound routing, with slack-bolt loaded after ready.

Bolt routes every event, slash command and button press to the channel's handlers, but the
start uses none of it: it checks the bot token (auth.test, through slack_sdk's AsyncWebClient)
and opens Socket Mode (slack_sdk's aiohttp client). Bolt's packages import its synchronous
`App`, `WebClient`, OAuth flow and their SQLite stores along with the async app (~220 modules,
~70-100 ms of CPU, most of what the Slack adapter cost the start), and no import path of the
async app leaves them out. So Bolt is imported with the first request that needs it, in a
worker thread (the event loop keeps answering meanwhile), and the app is built then; requests
that arrive meanwhile wait for it. The gateway asks for it once the start is over
(`after_ready`) where the channel receives (a Socket Mode follower: when it becomes leader),
so it is usually loaded before the first request. Only Bolt's public modules are imported:
the Socket Mode headers and answer its own handler uses are private, so they are built here.
Whether Bolt is installed is still checked when the adapter is imported, so a start without
it fails as before; one installed but not importable (a version mismatch, a sub-dependency
missing, an import lock error) is logged at ERROR with its cause (not after the channel
stopped), shown by the channel's health, and tried again by the next request.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ChannelError

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp
    from slack_bolt.request.async_request import AsyncBoltRequest
    from slack_bolt.response import BoltResponse

log = logging.getLogger("decapod.channels.slack")

#: as Bolt's AsyncSocketModeHandler sets it (slack_sdk's own default is 5 s)
PING_INTERVAL_S = 10.0
#: the key of a request's Bolt context holding the loop time it was received at
RECEIVED_AT = "decapod_received_at"

if importlib.util.find_spec("slack_bolt") is None:  # found without importing it
    raise ImportError("No module named 'slack_bolt'", name="slack_bolt")


@dataclass(frozen=True)
class BoltParts:
    """All of Bolt that routing a request uses, imported together in the worker thread."""

    app_type: type[AsyncApp]
    request_type: type[AsyncBoltRequest]
    #: HTTP mode's answer
    to_aiohttp_response: Callable[[BoltResponse], Awaitable[web.Response]]


@dataclass(frozen=True)
class LoadedBolt:
    app: AsyncApp
    parts: BoltParts


def _import_bolt() -> BoltParts:
    from slack_bolt.adapter.aiohttp import to_aiohttp_response
    from slack_bolt.async_app import AsyncApp
    from slack_bolt.request.async_request import AsyncBoltRequest

    return BoltParts(AsyncApp, AsyncBoltRequest, to_aiohttp_response)


def socket_retry_headers(request: SocketModeRequest) -> dict[str, str | Sequence[str]] | None:
    """A Socket Mode envelope's retry fields as the HTTP headers Bolt reads them from (as
    Bolt's own handler does; its helper is private and missing from older versions)."""
    headers: dict[str, str | Sequence[str]] = {}
    if request.retry_attempt is not None:
        headers["x-slack-retry-num"] = str(request.retry_attempt)
    if request.retry_reason is not None:
        headers["x-slack-retry-reason"] = request.retry_reason
    return headers or None


async def send_socket_response(
    client: AsyncBaseSocketModeClient, request: SocketModeRequest, response: BoltResponse
) -> None:
    """Bolt's answer to an envelope, sent as Bolt's AsyncSocketModeHandler sends it (its
    helper is private): an empty ack, a JSON payload, or text; nothing when it failed."""
    if response.status != 200:
        log.info("slack: a request was not handled (status %s)", response.status)
        return
    content_type = response.headers.get("content-type", [""])[0]
    if not response.body:
        answer = SocketModeResponse(envelope_id=request.envelope_id)
    elif content_type.startswith("application/json"):
        answer = SocketModeResponse(
            envelope_id=request.envelope_id, payload=json.loads(response.body)
        )
    else:
        answer = SocketModeResponse(
            envelope_id=request.envelope_id, payload={"text": response.body}
        )
    await client.send_socket_mode_response(answer)


class LazyBolt:
    """The channel's Bolt app, imported after ready (or by the first request that needs it)
    and then built. A failed import is not kept: the next request tries again."""

    def __init__(self, name: str, build: Callable[[BoltParts], AsyncApp | None]) -> None:
        self._name = name
        self._build = build
        self._loaded: LoadedBolt | None = None
        self._importing: asyncio.Future[BoltParts] | None = None
        self._closed = False
        #: why the last import failed (None: it did not, or none ended yet)
        self.failure: str | None = None

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def preload(self) -> None:
        """Import Bolt now, in the background (after ready: nothing waits for it)."""
        if self._loaded is None and not self._closed:
            self._import()

    def close(self) -> None:
        """The channel stopped: requests still waiting for Bolt are dropped."""
        self._closed = True

    def _import(self) -> asyncio.Future[BoltParts]:
        if self._importing is None:  # one import at a time, whoever asks first
            self._importing = asyncio.ensure_future(asyncio.to_thread(_import_bolt))
            self._importing.add_done_callback(self._imported)
        return self._importing

    def _imported(self, importing: asyncio.Future[BoltParts]) -> None:
        if importing.cancelled():
            self._importing = None
            return
        exc = importing.exception()
        if exc is None:
            self.failure = None
            return
        self._importing = None  # the next request tries again
        if self.failure is None and not self._closed:  # said once; nothing to say after stop
            log.error(
                "slack %s: slack-bolt is installed but could not be imported (%s: %s); "
                "requests are not answered until it imports",
                self._name,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
        self.failure = f"slack-bolt could not be imported: {type(exc).__name__}: {exc}"

    async def app(self) -> LoadedBolt | None:
        """The loaded app, or None when the channel stopped meanwhile; raises ChannelError
        when Bolt could not be imported."""
        if self._loaded is None and not self._closed:
            try:
                parts = await asyncio.shield(self._import())
            except Exception as exc:
                raise ChannelError(f"slack {self._name}: {self.failure or exc}") from exc
            if self._loaded is None and not self._closed:
                app = self._build(parts)
                if app is not None:
                    self._loaded = LoadedBolt(app, parts)
        return None if self._closed else self._loaded


async def dispatch_http(
    name: str, lazy: LazyBolt, raw: bytes, request: web.Request, received_at: float
) -> web.StreamResponse:
    """A signed Events API request through the app (loaded first if need be)."""
    try:
        bolt = await lazy.app()
    except ChannelError:  # logged and shown by health
        # Slack sends an unanswered Events API request again; a slash command or a button
        # press is not sent again: the person sees it time out
        bolt = None
    if bolt is None:
        return web.Response(status=503, headers={"Retry-After": "1"})
    try:
        bolt_request = bolt.parts.request_type(
            body=raw.decode("utf-8"),
            query=request.query_string,
            headers=dict(request.headers),
            context={RECEIVED_AT: received_at},
        )
        readable = isinstance(bolt_request.body, dict)
    except (ValueError, AttributeError, TypeError):
        # not UTF-8, not JSON, or JSON that is not an object (Bolt assumes one)
        readable = False
    if not readable:
        log.warning("slack %s: skipped a signed request whose body is unreadable", name)
        return web.Response(status=400, headers={"X-Slack-No-Retry": "1"})
    return await bolt.parts.to_aiohttp_response(await bolt.app.async_dispatch(bolt_request))


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
        received_at = asyncio.get_running_loop().time()
        try:
            bolt = await self._bolt.app()
        except ChannelError:
            # not acknowledged (the failure is logged and shown): Slack sends an Events API
            # envelope again; a slash command or a button press times out for the person
            return
        if bolt is None:
            return  # stopped meanwhile: dropped unacknowledged, as a closed socket would
        parts = bolt.parts
        bolt_request = parts.request_type(
            mode="socket_mode",
            body=request.payload,
            headers=socket_retry_headers(request),
            context={RECEIVED_AT: received_at},
        )
        await send_socket_response(client, request, await bolt.app.async_dispatch(bolt_request))
