"""Slack (slack-bolt AsyncApp): Socket Mode by default, or the Events API on our HTTP server.

Inbound: Bolt's own matchers route `message` and `app_mention` events here (Bolt itself is
imported after ready, or by the first request it routes: channels/slack_dispatch.py); every
other event type is acknowledged and ignored on purpose (left unmatched, Bolt would answer
404 and Slack would send it again). Each event is normalized (channels/slack_inbound.py) and
handed to the gateway's sink, which only stores and queues it; the event is acknowledged when
that returns, or `ack_budget_s` after it was received at the latest (channels/slack_handover.py
says why Bolt's own ack modes cannot give that). Slash commands are acknowledged first and handed on
afterwards; their answers go to the response_url (channels/slack_commands.py).

Buttons (approvals, pickers) are Block Kit: a section with the text and an actions block,
with the plain text kept as the notification fallback. A press reaches bolt's `action`
handler as `decapod:<token>`; it is acknowledged, stored as the presser's own command, and
the message is replaced through the press's response_url to show the decision without the
buttons. A refused press (someone else's buttons, expired) gets an ephemeral answer.

A channel mention that is taken makes its thread the bot's at once (kept on disk), so a
reply in that thread needs no mention even while the first answer is still being written.

HTTP mode checks Slack's signature once, with slack_sdk's SignatureVerifier, before the body
is parsed; Bolt's RequestVerification middleware is off because it could only check the same
signature again after Bolt had parsed the body.

Outbound (channels/slack_outbound.py): Markdown becomes mrkdwn, chunks of ~4,000 characters,
streaming by chat.update at most once a second, at most one message a second per Slack
channel, and Retry-After is honoured both by the SDK's retry and by pausing every send of
the channel.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from bot.channel_configs.slack import SlackChannelConfig
from bot.channel_state import ChannelState
from bot.config import channel_secrets
from bot.config_base import GroupConfig
from bot.errors import ChannelError
from bot.messages import (
    Attachment,
    ConversationKind,
    InboundMessage,
    size_text,
)
from bot.proxy_env import check_proxy_env
from channels import InboundSink
from channels.buttons import ButtonBook
from channels.slack_api import SlackApi, WorkingSignal, doctor, signed
from channels.slack_buttons import ACTION_PREFIX
from channels.slack_dispatch import (
    RECEIVED_AT,
    BoltParts,
    LazyBolt,
    SocketReceiver,
    dispatch_http,
)
from channels.slack_handover import Handover
from channels.slack_inbound import Normalizer, ThreadMemory
from channels.slack_outbound import SlackOutbound

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp
    from slack_bolt.context.async_context import AsyncBoltContext

log = logging.getLogger("decapod.channels.slack")


class _QuietBolt(logging.Filter):
    """Bolt also reads SLACK_BOT_TOKEN, the default name of our own variable, and then warns
    on every start that the token beside our client is unused. It is the same token."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("As you gave `client` as well")


_bolt_log = log.getChild("bolt")
_bolt_log.addFilter(_QuietBolt())

EVENTS_PATH = "/slack/events"
CONNECT_TIMEOUT_S = 30.0
__all__ = ["SlackChannel", "create", "doctor"]


class SlackChannel(SlackOutbound):
    type = "slack"
    max_message_len = 4000
    edit_interval = 1.0
    #: Slack allows about one chat.postMessage a second per channel
    chat_interval = 1.0
    supports_buttons = True
    #: seconds an event waits for the sink before it is acknowledged anyway (Slack allows 3)
    ack_budget_s = 2.0

    def __init__(self, name: str, settings: SlackChannelConfig, home: Path | None) -> None:
        super().__init__(name)
        self.settings = settings
        self.supports_edit = settings.stream
        secrets = channel_secrets(name, settings)  # the app token or the signing secret
        self._bot_token = secrets["bot_token_env"]
        self._app_token = secrets.get("app_token_env", "")
        self._verifier: SignatureVerifier | None = None
        if "signing_secret_env" in secrets:
            self._verifier = SignatureVerifier(secrets["signing_secret_env"])
        self.max_file_bytes = int(settings.max_file_mb * 1_048_576)
        self.threads = ThreadMemory(home / f"slack-{name}-threads.json" if home else None)
        self.buttons = ButtonBook(home / f"slack-{name}-buttons.json" if home else None)
        self._handover = Handover(name, self.ack_budget_s)
        self._api: SlackApi | None = None
        self._bolt: LazyBolt | None = None  # routing, loaded with the first request
        self._socket: SocketReceiver | None = None
        self._normalizer: Normalizer | None = None
        self._commands: set[asyncio.Task[None]] = set()  # commands handed on after their ack
        self._working = WorkingSignal(self._web, settings.working_signal)
        self.bot_user_id = ""

    # lifecycle -------------------------------------------------------------------------------
    def use_state(self, state: ChannelState) -> None:
        super().use_state(state)
        self.threads.use(state, self.name)

    async def start(self, sink: InboundSink) -> None:
        await super().start(sink)
        try:
            await self._connect()
        except BaseException:
            await self.stop()
            raise

    async def _connect(self) -> None:
        await self.threads.open()
        self._api = SlackApi(self._bot_token, self.settings.api_url, self._pause)
        try:
            auth = await self._api.call("auth.test")
        except ChannelError as exc:
            raise ChannelError(f"{exc}; check {self.settings.bot_token_env}") from None
        self.bot_user_id = str(auth.get("user_id") or "")
        self._normalizer = Normalizer(
            self.name, self.bot_user_id, self.threads, self.settings.slash_command
        )
        self._bolt = LazyBolt(self.name, self._build_app)
        if self.settings.mode == "socket" and self.receive_on_start:
            await self._open_socket(self._bolt)
        log.info(
            "slack %s connected as %s (%s mode)", self.name, self.bot_user_id, self.settings.mode
        )

    def after_ready(self) -> None:
        # a Socket Mode follower receives nothing: it loads Bolt when it becomes leader
        if self._bolt is not None and (self.settings.mode == "http" or self._socket is not None):
            self._bolt.preload()

    def _build_app(self, bolt: BoltParts) -> AsyncApp | None:
        if self._api is None:
            return None  # stopped while Bolt was imported
        app = bolt.app_type(
            client=self._api.client,
            name=f"decapod-{self.name}",
            # our listeners only store and queue, so they finish well inside Slack's 3 s, and
            # the acknowledgement then tells Slack whether the event was really taken
            process_before_response=True,
            # checked by _on_http before the body is parsed (module docstring)
            request_verification_enabled=False,
            logger=_bolt_log,
        )
        app.event("message")(self._on_event)
        app.event("app_mention")(self._on_event)
        app.event(re.compile(".*"))(self._on_other_event)  # the first match wins: keep it last
        app.command(self.settings.slash_command)(self._on_slash)
        app.action(re.compile("^" + re.escape(ACTION_PREFIX)))(self._on_action)
        return app

    async def _open_socket(self, bolt: LazyBolt) -> None:
        # The SDK retries a failed connect forever; a wrong app token or Socket Mode being
        # off must stop the start instead, so the token is tried once by hand first.
        try:
            await self._web().client.apps_connections_open(app_token=self._app_token)
        except SlackApiError as exc:
            raise ChannelError(
                f"slack {self.name}: apps.connections.open failed ({exc.response.get('error')});"
                f" check {self.settings.app_token_env} and that Socket Mode is on"
            ) from None
        socket = self._socket = SocketReceiver(bolt, self._app_token, self._web().client, _bolt_log)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await socket.connect()
        except BaseException as exc:
            # a receiver left set makes the next start_receiving a no-op: the leader would
            # hold the lock receiving nothing while health says it receives
            if self._socket is socket:
                self._socket = None
            await socket.close()
            if isinstance(exc, TimeoutError):
                raise ChannelError(
                    f"slack {self.name}: no Socket Mode connection within {CONNECT_TIMEOUT_S:g}s"
                ) from None
            raise

    async def stop(self) -> None:
        # the loader first: a request waiting for Bolt must not wake during the awaits below,
        # build the app and store a message it can no longer acknowledge
        if self._bolt is not None:
            self._bolt.close()
            self._bolt = None
        if self._socket is not None:
            await self._socket.close()
            self._socket = None
        if self._commands:
            await asyncio.wait(self._commands, timeout=self.ack_budget_s)
        await self._handover.close(self.ack_budget_s)
        if self._api is not None:
            await self._api.close()
            self._api = None
        await super().stop()

    def receives_exclusively(self) -> bool:
        # one Socket Mode connection, on the leader; Events API posts go to any replica
        return self.settings.mode == "socket"

    async def start_receiving(self) -> None:
        if self._bolt is not None and self._socket is None and self.receives_exclusively():
            self._bolt.preload()  # started now, while the socket opens
            await self._open_socket(self._bolt)

    async def stop_receiving(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close()

    def health(self) -> dict[str, Any]:
        bolt = self._bolt
        connected = bolt is not None and bolt.failure is None
        if self._socket is not None:
            session = self._socket.client.current_session
            connected = connected and session is not None and not session.closed
        return {
            "type": self.type,
            "mode": self.settings.mode,
            "running": self.sink is not None and connected,
            "bot_user_id": self.bot_user_id,
            **({"error": bolt.failure} if bolt is not None and bolt.failure else {}),
            **({"receiving": self._socket is not None} if self.receives_exclusively() else {}),
        }

    def http_routes(self) -> list[tuple[str, str, Callable[[web.Request], Any]]]:
        return [("POST", EVENTS_PATH, self._on_http)] if self.settings.mode == "http" else []

    # inbound -------------------------------------------------------------------------------
    async def _on_http(self, request: web.Request) -> web.StreamResponse:
        received_at = asyncio.get_running_loop().time()
        lazy, verifier = self._bolt, self._verifier
        if lazy is None or verifier is None:
            return web.Response(status=503, headers={"Retry-After": "1"})
        raw = await request.read()
        if not signed(verifier, raw, request.headers):
            return web.Response(status=401, text="invalid signature")
        return await dispatch_http(self.name, lazy, raw, request, received_at)

    async def _on_event(self, body: dict[str, Any], context: AsyncBoltContext) -> None:
        assert self._normalizer is not None
        # Slack's 3 s run from when the request was received, not from when Bolt routed it
        received_at = context.get(RECEIVED_AT)
        deadline = self._handover.deadline(received_at if isinstance(received_at, float) else None)
        event = body.get("event")
        if isinstance(event, dict):
            chat_id, thread_ts = event.get("channel"), event.get("thread_ts")
            if isinstance(chat_id, str) and isinstance(thread_ts, str):
                await self.threads.recall(chat_id, thread_ts)  # posted in by another replica?
        try:
            normalized = self._normalizer.event(body, self.commands)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            log.warning("slack %s: skipped a malformed event: %r", self.name, exc)
            return
        if normalized is None:
            return
        message, keys = normalized
        if not self._addressed_or_open(message):
            return
        await self._handover.deliver(message.id, keys, partial(self._take, message), deadline)

    async def _on_other_event(self, body: dict[str, Any]) -> None:
        event = body.get("event")
        kind = event.get("type") if isinstance(event, dict) else None
        log.debug("slack %s: acknowledged and ignored a %s event", self.name, kind)

    def _group(self, chat_id: str) -> GroupConfig | None:
        groups = self.settings.access.groups
        return groups.get(chat_id) or groups.get("*")

    def _addressed_or_open(self, message: InboundMessage) -> bool:
        """Channel chatter the access policy would refuse anyway is not handed on, so the inbox
        does not keep every message of every channel the bot is in. The gateway still decides."""
        conversation = message.conversation
        if conversation.kind is ConversationKind.DM or message.mentioned:
            return True
        group = self._group(conversation.chat_id)
        return group is not None and not group.require_mention

    async def _take(self, message: InboundMessage) -> None:
        """Store one message through the sink. A mention in a channel the bot may answer in
        makes its thread the bot's first, so the replies that follow it are heard."""
        if self.sink is None:
            raise ChannelError(f"slack {self.name} is not running")
        conversation = message.conversation
        if (
            message.mentioned
            and conversation.kind is ConversationKind.CHANNEL
            and conversation.thread_id
            and self._group(conversation.chat_id) is not None
        ):
            await self.threads.add(conversation.chat_id, conversation.thread_id)
        await self.sink(message)

    # downloads -----------------------------------------------------------------------------
    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes:
        limit = min(max_bytes, self.max_file_bytes)
        name = attachment.name or "file"
        if not attachment.ref:
            raise ChannelError(f"Slack sent no download link for {name}")
        if attachment.size is not None and attachment.size > limit:
            raise ChannelError(
                f"{name} is {size_text(attachment.size)}; the limit is {size_text(limit)}"
            )
        return await self._web().download(attachment.ref, limit, name)


def create(name: str, channel_config: SlackChannelConfig, config: Any) -> SlackChannel:
    check_proxy_env()
    return SlackChannel(name, channel_config, config.home)
