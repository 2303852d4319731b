"""Telegram through python-telegram-bot's Bot, with Decapod's own lifecycle.

Long polling by default (channels/telegram_polling.py: the offset moves only past stored
updates); webhook mode serves Telegram's posts on the gateway's HTTP server and checks the
secret token. Replies are Markdown rendered to Telegram HTML (channels/telegram_html.py),
sent again as plain text when Telegram rejects the formatting, with link previews off and
within Telegram's send limits (channels/telegram_pacing.py).

The token never appears in a log line or an error: it is registered with the redactor, the
HTTP loggers (which print request URLs, and Telegram's URLs contain the token) are held at
WARNING, and every error text passes through `scrub`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# first: httpx and python-telegram-bot without what they only import for unused features
import channels.telegram_lean  # noqa: F401

# isort: split
from aiohttp import web
from telegram import BotCommand, BotCommandScopeChat, CallbackQuery, Update
from telegram.error import BadRequest, InvalidToken, TelegramError

from bot.channel_configs.telegram import TelegramChannelConfig
from bot.channel_state import ChannelState
from bot.commands import CommandSpec
from bot.config import channel_secrets
from bot.errors import ChannelError, ConfigError, DeliveryRefused
from bot.messages import Identity, SentRef
from bot.proxy_env import check_proxy_env
from bot.redaction import register_secret
from bot.tasks import cancel_and_wait
from channels import InboundSink
from channels.buttons import EXPIRED, ButtonBook, Press, Refused
from channels.stream_reply import edited
from channels.telegram_inbound import BotIdentity, ChatMigrations, normalize
from channels.telegram_outbound import CALLBACK_PREFIX, TelegramOutbound
from channels.telegram_polling import (
    READ_MARGIN_S,
    RawUpdatesBot,
    UpdatePoller,
    describe,
    excerpt,
    first_of,
    sleep_unless,
)
from channels.telegram_request import AiohttpRequest
from channels.telegram_token import quiet_http_loggers, register_token

log = logging.getLogger("decapod.channels.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
_COMMAND_NAME = re.compile(r"^[a-z0-9_]{1,32}$")
#: seconds a stop waits for the update being stored before it gives up on it
_STOP_GRACE_S = 5.0


class TelegramChannel(TelegramOutbound):
    def __init__(
        self,
        name: str,
        config: TelegramChannelConfig,
        token: str,
        *,
        home: Path,
        owners: list[str] | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        super().__init__(name, config, ChatMigrations(home / f"telegram-{name}-chats.json"))
        self.me: BotIdentity | None = None
        self.buttons = ButtonBook(home / f"telegram-{name}-buttons.json")
        self._token = token
        self._owner_ids = [o.partition(":")[2] for o in owners or () if o.startswith(name + ":")]
        self._secret = webhook_secret or secrets.token_urlsafe(32)
        register_secret(self._secret, "telegram webhook secret")
        self._poller: UpdatePoller | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        self._inbound_lock = asyncio.Lock()
        #: polling mode: set while this process should poll (the leader, or a lone process)
        self._receive = asyncio.Event()
        #: ends the current poll (a stop, or `stop_receiving`)
        self._poll_stop = asyncio.Event()
        self._not_polling = asyncio.Event()
        self._not_polling.set()

    # lifecycle ---------------------------------------------------------------------------
    def use_state(self, state: ChannelState) -> None:
        super().use_state(state)
        self.migrations.use(state, self.name)

    async def start(self, sink: InboundSink) -> None:
        await super().start(sink)
        await self.migrations.open()
        self._stopping.clear()
        if self.receive_on_start:
            self._receive.set()
        cfg = self.config
        self._bot = RawUpdatesBot(
            self._token,
            base_url=cfg.api_base_url,
            base_file_url=cfg.file_base_url,
            request=AiohttpRequest(32, pool_timeout=10.0, proxies=self._proxies),
            # a long poll's answer may take the poll's whole timeout, and a little more
            get_updates_request=AiohttpRequest(
                2, read_timeout=cfg.poll_timeout_s + READ_MARGIN_S, proxies=self._proxies
            ),
        )
        try:
            await self._connect()
        except InvalidToken:
            await self._close_clients()
            raise ChannelError(
                f"channels.{self.name}: Telegram rejected the bot token in {cfg.token_env}"
            ) from None
        except TelegramError as exc:
            log.warning("telegram %s: %s; connecting in the background", self.name, describe(exc))
        self._task = asyncio.create_task(self._run(), name=f"telegram-{self.name}")
        self._task.add_done_callback(self._task_ended)

    async def _connect(self) -> None:
        bot, cfg = self.bot, self.config
        await bot.initialize()
        self.me = BotIdentity(bot.id, bot.username)
        if cfg.mode == "webhook":
            where = bot.set_webhook(
                cfg.webhook_url,
                allowed_updates=ALLOWED_UPDATES,
                secret_token=self._secret,
                # one at a time keeps the messages of a chat in order
                max_connections=1,
                drop_pending_updates=False,
            )
        else:
            # getUpdates is refused while a webhook is set; pending updates stay queued
            where = bot.delete_webhook(drop_pending_updates=False)
        # two round trips to Telegram that do not depend on each other, at once (the start
        # waits for both); both are tried, and the first error is raised
        menu = [self._register_commands()] if self.publish_on_start else []
        for outcome in await asyncio.gather(*menu, where, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
        self._ready.set()
        log.info("telegram %s connected as @%s (%s)", self.name, self.me.username, cfg.mode)

    async def _run(self) -> None:
        backoff = 1.0
        while not self._ready.is_set():
            await sleep_unless(self._stopping, backoff)
            if self._stopping.is_set():
                return
            try:
                await self._connect()
            except TelegramError as exc:
                log.warning("telegram %s: still not connected: %s", self.name, describe(exc))
                backoff = min(backoff * 2, 60.0)
        while self.config.mode == "polling":
            await first_of(self._receive, self._stopping)
            if self._stopping.is_set():
                return
            self._poll_stop.clear()
            self._not_polling.clear()
            try:
                poller = self._poller = UpdatePoller(
                    self.bot,
                    self._handle_update,
                    self._poll_stop,
                    timeout_s=self.config.poll_timeout_s,
                    allowed_updates=ALLOWED_UPDATES,
                )
                log.info("telegram %s: polling", self.name)
                await poller.run()
                if not self._stopping.is_set():  # stop_receiving: a stop confirms in stop()
                    await poller.confirm()
                    self._poller = None
                    log.info("telegram %s: stopped polling", self.name)
            finally:
                self._not_polling.set()

    def receives_exclusively(self) -> bool:
        # Telegram answers 409 Conflict to a second poller; webhooks go to any replica
        return self.config.mode == "polling"

    async def start_receiving(self) -> None:
        self._receive.set()

    async def stop_receiving(self) -> None:
        self._receive.clear()
        self._poll_stop.set()
        await self._not_polling.wait()

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.error("telegram %s stopped receiving: %s", self.name, describe(error))

    async def stop(self) -> None:
        self._stopping.set()
        self._poll_stop.set()
        self._ready.clear()  # webhook posts get 503 from now on: Telegram sends them again
        if self._task is not None:
            try:
                async with asyncio.timeout(_STOP_GRACE_S):
                    await asyncio.shield(self._task)
            except TimeoutError:
                await cancel_and_wait(self._task)
            self._task = None
        if self._poller is not None:
            await self._poller.confirm()
            self._poller = None
        # a webhook stays set: Telegram keeps the updates until the next start
        await self._close_clients()
        await super().stop()

    async def _close_clients(self) -> None:
        if self._downloads is not None:
            self._end_downloads()
            await self._downloads.close()
            self._downloads = None
        if self._bot is not None:
            with contextlib.suppress(TelegramError):
                await self._bot.shutdown()
            self._bot = None

    def health(self) -> dict[str, Any]:
        report = super().health()
        report.update(mode=self.config.mode, connected=self._ready.is_set())
        if self.config.mode == "polling":
            report["receiving"] = self._poller is not None
        if self.me is not None:
            report["username"] = self.me.username
        poller = self._poller
        if poller is not None and poller.last_ok is not None:
            age = time.monotonic() - poller.last_ok
            report["last_poll_s"] = round(age, 1)
            # a poll that has not come back well past its timeout is a stalled connection
            report["running"] = report["running"] and age < 3 * (self.config.poll_timeout_s + 10)
        return report

    async def publish_commands(self, commands: list[CommandSpec]) -> None:
        await super().publish_commands(commands)
        if self._bot is not None:
            await self._register_commands()

    async def _register_commands(self) -> None:
        # Telegram takes names of a-z, 0-9 and _ only, and 1 to 256 characters of description
        specs = [s for s in self.commands if _COMMAND_NAME.match(s.name)]
        menu = {s.name: BotCommand(s.name, (s.description or s.name)[:256]) for s in specs}
        public = [menu[s.name] for s in specs if not s.owner_only]
        everything = list(menu.values())
        try:
            await self.bot.set_my_commands(public[:100])
        except BadRequest as exc:
            log.warning("telegram %s: command menu not set: %s", self.name, describe(exc))
        for owner in self._owner_ids:
            with contextlib.suppress(BadRequest, ValueError):  # the owner never opened the chat
                await self.bot.set_my_commands(everything[:100], BotCommandScopeChat(int(owner)))

    # inbound -----------------------------------------------------------------------------
    def http_routes(self) -> list[tuple[str, str, Callable[[web.Request], Awaitable[Any]]]]:
        if self.config.mode != "webhook":
            return []
        return [("POST", self.config.route_path, self._on_webhook)]

    async def _on_webhook(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret.encode()):
            return web.Response(status=401)
        if self.sink is None or not self._ready.is_set():
            return web.Response(status=503)  # Telegram tries again later
        try:
            raw = await request.json()
        except ValueError:
            log.warning("telegram %s: a webhook body that is not JSON; skipped", self.name)
            return web.Response(status=200)
        try:
            await self._handle_update(raw)
        except Exception as exc:
            log.error("could not store a telegram update: %s", describe(exc))
            return web.Response(status=500)  # not stored: Telegram delivers it again
        return web.Response(status=200)

    async def _handle_update(self, raw: Any) -> None:
        """Store one update through the sink, or drop it. Raises only when storing failed."""
        assert self.me is not None
        bot = self.bot
        async with self._inbound_lock:
            await self.migrations.recall_for(raw)
            try:
                update = Update.de_json(raw, bot)
                press = update.callback_query
                message = None if press else normalize(update, self.name, self.me, self.migrations)
            except Exception as exc:  # any broken shape: the update is skipped, never fatal
                log.warning(
                    "skipping a malformed telegram update (%s): %s", describe(exc), excerpt(raw)
                )
                return
            await self.migrations.saved()
            if press is not None:
                await self._on_press(press)
            elif message is not None and self.sink is not None:
                await self.sink(message)

    async def _on_press(self, query: CallbackQuery) -> None:
        """A tap on an inline button. Stored as the presser's command before Telegram hears
        back (a failure leaves the update unconfirmed, so it comes again); then the spinner
        is stopped with answerCallbackQuery, and the message loses its buttons. A refused
        press is answered with an alert only the presser sees."""
        data = query.data or ""
        user = query.from_user
        identity = Identity(self.name, str(user.id), user.full_name, is_bot=user.is_bot)
        press = Press(str(query.id), data.removeprefix(CALLBACK_PREFIX), identity)
        result = (
            await self.take_press(press) if data.startswith(CALLBACK_PREFIX) else Refused(EXPIRED)
        )
        refused = result.reason if isinstance(result, Refused) else None
        try:
            await self.bot.answer_callback_query(query.id, text=refused, show_alert=bool(refused))
        except TelegramError as exc:  # too late (Telegram waits about 15 s): the press stands
            log.info("telegram %s: press %s not answered: %s", self.name, query.id, describe(exc))
        shown = query.message
        if shown is not None and not isinstance(result, Refused):
            ref = SentRef(result.conversation, str(shown.message_id))
            try:
                await edited(self, result.conversation, ref, result.fitted(self.split))
            except DeliveryRefused as exc:
                # the press is stored and runs: raised on, the update would be read again
                # and again, and no later update of any chat behind it
                log.info("telegram %s: pressed message not updated: %s", self.name, exc.reason)


def create(name: str, channel_config: TelegramChannelConfig, config: Any) -> TelegramChannel:
    secrets = channel_secrets(name, channel_config)
    token = secrets["token_env"]
    register_token(token)
    quiet_http_loggers()
    check_proxy_env()
    if channel_config.mode == "webhook" and not config.http.enabled:
        raise ConfigError(
            "webhook mode is served by Decapod's HTTP server; set [http] enabled = true",
            f"channels.{name}.mode",
        )
    secret = secrets.get("webhook_secret_env")
    if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
        raise ConfigError(
            f"{channel_config.webhook_secret_env} may hold only A-Z, a-z, 0-9, _ and - "
            "(1 to 256 characters)",
            f"channels.{name}.webhook_secret_env",
        )
    return TelegramChannel(
        name,
        channel_config,
        token,
        home=config.home,
        owners=list(config.gateway.owners),
        webhook_secret=secret,
    )
