"""The send side of the Telegram channel: Markdown rendered to Telegram HTML with a plain-text
retry when Telegram refuses the formatting, chunks that fit Telegram's 4096 limit (a text
Telegram still finds too long goes again in smaller pieces, never retried as it was), link
previews off, Telegram's send limits, and Telegram's errors mapped to Decapod's (in `_call`
and `classified`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    LinkPreviewOptions,
    ReplyParameters,
)
from telegram.constants import ChatAction, ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from bot.channel_configs.telegram import TelegramChannelConfig
from bot.errors import (
    ChannelError,
    DeliveryRefused,
    EditRejected,
    RateLimited,
    SendSmaller,
)
from bot.messages import (
    Attachment,
    Conversation,
    ConversationKind,
    OutboundMessage,
    SentRef,
    size_text,
)
from bot.proxy_env import ProxyLookup
from channels.base import BaseChannel, FileUpload
from channels.buttons import Button
from channels.chunks import Chunk, split_text
from channels.telegram_html import markdown_to_html, utf16_len
from channels.telegram_inbound import ChatMigrations
from channels.telegram_pacing import RateLimits, SendPacer
from channels.telegram_polling import RawUpdatesBot, describe, retry_after_seconds
from channels.telegram_refusals import TooLong, classified, entities_rejected
from channels.telegram_request import NotSent, new_session

log = logging.getLogger("decapod.channels.telegram")

T = TypeVar("T")
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
#: Telegram takes photos up to 10 MB; a larger picture goes as a document
_MAX_PHOTO_BYTES = 10 * 1024 * 1024
_CAPTION_LIMIT = 1024
_CONNECT_ATTEMPTS = 3
#: file downloads: a connection within 10 s, and no 30 s without a byte
_DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=30.0)
_DOWNLOAD_POOL = 8
#: a button's callback_data: this prefix and the book's token (Telegram allows 64 bytes)
CALLBACK_PREFIX = "b:"
_BUTTONS_PER_ROW = 2


class TelegramOutbound(BaseChannel):
    type = "telegram"
    max_message_len = 4096
    supports_edit = True
    supports_buttons = True
    edit_interval = 1.0
    #: what the Bot API takes from a bot (without a local Bot API server)
    max_upload_bytes = 50 * 1024 * 1024
    sends_voice_notes = True
    #: a text Telegram calls too long goes in halves, then halves of those, not below this
    smallest_piece = 256

    def __init__(
        self, name: str, config: TelegramChannelConfig, migrations: ChatMigrations
    ) -> None:
        super().__init__(name)
        self.config = config
        self.supports_edit = config.stream
        self.migrations = migrations
        self.pacer = SendPacer(
            RateLimits(
                chat_interval_s=config.chat_interval_s,
                group_limit=config.group_messages_per_minute,
                global_limit=config.messages_per_second,
            )
        )
        self._bot: RawUpdatesBot | None = None
        #: made with the first download (most starts never download a file)
        self._downloads: aiohttp.ClientSession | None = None
        #: the environment's proxy for Telegram's addresses, for every request of the channel
        self._proxies = ProxyLookup()
        #: the downloads being read, closed by a stop (closing the session does not end them)
        self._reading: set[aiohttp.ClientResponse] = set()

    @property
    def bot(self) -> RawUpdatesBot:
        if self._bot is None:
            raise ChannelError(f"telegram channel {self.name} is not started")
        return self._bot

    def split(self, text: str) -> list[Chunk]:
        out: list[Chunk] = []
        for chunk in split_text(text, self.max_message_len):
            out.extend(self._fit(chunk, self.max_message_len))
        return out

    def _fit(self, chunk: Chunk, limit: int) -> list[Chunk]:
        # Telegram counts the text after parsing the HTML, in UTF-16 units. The HTML itself
        # is never shorter, so a piece whose HTML fits also fits as parsed text, and as the
        # plain-text fallback when its source fits too. Escapes and tags can grow a piece;
        # split those again, smaller.
        size = max(utf16_len(markdown_to_html(chunk.text)), utf16_len(chunk.text))
        if size <= self.max_message_len or limit <= 512:
            return [chunk]
        smaller = limit // 2
        return [
            fitted
            for part in split_text(chunk.text, smaller)
            for fitted in self._fit(chunk.part(part), smaller)
        ]

    async def _pace(self, conversation: Conversation) -> None:
        is_group = conversation.kind is not ConversationKind.DM
        while True:
            now = time.monotonic()
            wait = max(
                self._paused_until - now, self.pacer.wait(conversation.chat_id, is_group, now)
            )
            if wait <= 0:
                self.pacer.record(conversation.chat_id, is_group, now)
                return
            await asyncio.sleep(wait)

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        return await self._send(message, text, None)

    async def _send_buttons(
        self, message: OutboundMessage, text: str, buttons: list[Button]
    ) -> SentRef:
        keys = [
            InlineKeyboardButton(b.label, callback_data=CALLBACK_PREFIX + b.token) for b in buttons
        ]
        rows = [keys[i : i + _BUTTONS_PER_ROW] for i in range(0, len(keys), _BUTTONS_PER_ROW)]
        return await self._send(message, text, InlineKeyboardMarkup(rows))

    async def _send(
        self, message: OutboundMessage, text: str, keyboard: InlineKeyboardMarkup | None
    ) -> SentRef:
        conv = message.conversation
        reply = None
        if message.reply_to and message.reply_to.isdigit() and conv.kind is not ConversationKind.DM:
            # in a group, quote the message being answered; a DM needs no quote
            reply = ReplyParameters(int(message.reply_to), allow_sending_without_reply=True)
        preview = None if message.link_preview else _NO_PREVIEW

        async def send(chat_id: int, body: str, mode: str | None) -> Any:
            return await self.bot.send_message(
                chat_id,
                body,
                parse_mode=mode,
                message_thread_id=_thread(conv),
                reply_parameters=reply,
                link_preview_options=preview,
                reply_markup=keyboard,
            )

        try:
            sent = await self._formatted(conv, text, send)
        except TooLong as exc:
            # Telegram counted `text` longer than `split` did: the shared send path sends
            # it in pieces of half the size, each tried on its own, down to `smallest_piece`
            # (channels/base.py)
            raise SendSmaller(
                len(text) // 2,
                f"telegram refused a message of {len(text)} characters as too long ({exc})",
            ) from None
        return SentRef(conv, str(sent.message_id))

    async def _edit_text(self, ref: SentRef, text: str) -> None:
        """Also takes a message's buttons away: an edit without reply_markup drops them."""

        async def edit(chat_id: int, body: str, mode: str | None) -> Any:
            try:
                return await self.bot.edit_message_text(
                    body,
                    chat_id=chat_id,
                    message_id=int(ref.message_id),
                    parse_mode=mode,
                    link_preview_options=_NO_PREVIEW,
                )
            except BadRequest as exc:
                if "message is not modified" in str(exc).lower():
                    return None  # the edit changed nothing Telegram shows
                raise

        try:
            await self._formatted(ref.conversation, text, edit)
        except TooLong as exc:
            # the answer goes on in a new message (sent in pieces that fit), as after any
            # edit Telegram will not take
            raise EditRejected(str(exc)) from None

    async def _typing(self, conversation: Conversation) -> None:
        async def typing(chat_id: int) -> bool:
            return await self.bot.send_chat_action(
                chat_id, ChatAction.TYPING, message_thread_id=_thread(conversation)
            )

        await self._call(typing, conversation)

    async def _send_file(self, upload: FileUpload) -> SentRef:
        conv, kind = upload.conversation, upload.kind
        if kind == "photo" and len(upload.data) > _MAX_PHOTO_BYTES:
            kind = "document"
        senders: dict[str, Callable[..., Awaitable[Any]]] = {
            "photo": self.bot.send_photo,
            "voice": self.bot.send_voice,
            "audio": self.bot.send_audio,
        }
        send = senders.get(kind, self.bot.send_document)

        async def attempt(chat_id: int) -> Any:
            # a fresh InputFile per try: the request consumes it
            document = InputFile(upload.data, filename=upload.name)
            try:
                return await send(
                    chat_id,
                    document,
                    caption=upload.caption[:_CAPTION_LIMIT] or None,
                    message_thread_id=_thread(conv),
                )
            except BadRequest as exc:
                # a file Telegram will not take (its size, type, dimensions) stays refused
                refused = classified(exc)
                if type(refused) is ChannelError:
                    raise DeliveryRefused(exc.message, refused.args[0]) from None
                raise

        sent = await self._call(attempt, conv)
        return SentRef(conv, str(sent.message_id))

    async def _formatted(
        self,
        conv: Conversation,
        text: str,
        call: Callable[[int, str, str | None], Awaitable[T]],
    ) -> T:
        html = markdown_to_html(text)

        async def attempt(chat_id: int) -> T:
            try:
                return await call(chat_id, html, ParseMode.HTML)
            except BadRequest as exc:
                if not entities_rejected(exc):
                    raise
                log.info("telegram refused the formatting (%s); sent as plain text", describe(exc))
                return await call(chat_id, text, None)

        return await self._call(attempt, conv)

    async def _call(self, fn: Callable[[int], Awaitable[T]], conv: Conversation) -> T:
        """One API call for a chat, with Telegram's errors made Decapod's: RetryAfter becomes
        RateLimited (the base class pauses the whole channel), a migrated group is followed,
        a connection that was never made is tried again, refusals are classified
        (`classified`), the rest is a ChannelError (transient)."""
        chat_id = self.migrations.current(int(conv.chat_id))
        for attempt in range(_CONNECT_ATTEMPTS):
            try:
                return await fn(chat_id)
            except RetryAfter as exc:
                raise RateLimited(retry_after_seconds(exc)) from None
            except ChatMigrated as exc:
                self.migrations.record(chat_id, int(exc.new_chat_id))
                chat_id = int(exc.new_chat_id)
            except (BadRequest, Forbidden, InvalidToken) as exc:
                raise classified(exc) from None
            except NetworkError as exc:
                # only a request that never left may go again: one whose answer was
                # lost may have been delivered
                never_sent = isinstance(exc, NotSent)
                if not never_sent or attempt == _CONNECT_ATTEMPTS - 1:
                    raise ChannelError(f"telegram: {describe(exc)}") from None
                await asyncio.sleep(0.5 * (attempt + 1))
            except TelegramError as exc:
                raise ChannelError(f"telegram: {describe(exc)}") from None
        raise ChannelError("telegram: the chat keeps moving")

    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes:
        cap = min(max_bytes, int(self.config.max_download_mb * 1024 * 1024))
        what = attachment.name or attachment.kind
        if attachment.size is not None and attachment.size > cap:
            raise ChannelError(
                f"{what} is {size_text(attachment.size)}; the limit is {size_text(cap)}"
            )
        try:
            file = await self.bot.get_file(attachment.ref)
        except TelegramError as exc:
            raise ChannelError(f"telegram: {describe(exc)}") from None
        if file.file_size is not None and file.file_size > cap:
            raise ChannelError(
                f"{what} is {size_text(file.file_size)}; the limit is {size_text(cap)}"
            )
        if not file.file_path:
            raise ChannelError(f"telegram did not offer {what} for download")
        # stopped while Telegram was asked, or stopping (its session closes first): nothing
        # may open now, and a closed session would raise RuntimeError, not a ChannelError
        if self._bot is None or (self._downloads is not None and self._downloads.closed):
            raise ChannelError(f"telegram channel {self.name} is not started")
        if self._downloads is None:
            self._downloads = new_session(_DOWNLOAD_POOL, _DOWNLOAD_TIMEOUT)
        proxy = await self._proxies.for_url(file.file_path)
        data, ended = bytearray(), False
        try:
            async with self._downloads.get(
                file.file_path, proxy=proxy, allow_redirects=False
            ) as response:
                if response.status != 200:
                    raise ChannelError(f"downloading {what} failed: HTTP {response.status}")
                self._reading.add(response)
                try:
                    async for block in response.content.iter_any():
                        data += block
                        if len(data) > cap:
                            raise ChannelError(f"{what} is larger than {size_text(cap)}")
                finally:
                    ended = response not in self._reading  # a stop took it out
                    self._reading.discard(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if ended:
                raise ChannelError(f"telegram channel {self.name} stopped") from None
            # aiohttp's errors can carry the URL, and the URL carries the token
            raise ChannelError(f"downloading {what} failed: {type(exc).__name__}") from None
        return bytes(data)

    def _end_downloads(self) -> None:
        """A stop ends the downloads being read at once; a slow file would otherwise hold
        the stop up until its read timeout (`_DOWNLOAD_TIMEOUT`)."""
        for response in self._reading:
            response.close()
        self._reading.clear()


def _thread(conv: Conversation) -> int | None:
    return int(conv.thread_id) if conv.thread_id else None
