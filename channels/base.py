"""The shared send path every adapter inherits: chunking, pacing, retries, typing while the
model works, and streaming by throttled edits of one message.

An adapter implements the platform calls only: `_send_text`, and where the platform has
them `_edit_text`, `_typing` and `_send_file`, and raises the errors of bot/errors.py:
`RateLimited` (the whole channel pauses), `EditRejected` (that message is continued in a
new one), `DeliveryRefused` (permanent: never retried here; `SendSmaller`: the text goes
again in pieces, each retried on its own), any other `ChannelError`
(transient: retried with backoff a few times). Cutting text into messages is channels/chunks.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

from bot.channel_state import ChannelState
from bot.commands import CommandSpec
from bot.errors import ChannelError, DeliveryRefused, EditRejected, RateLimited, SendSmaller
from bot.messages import Attachment, Conversation, InboundMessage, OutboundMessage, SentRef
from channels import HttpRoute, InboundSink
from channels.buttons import Button, ButtonBook, Press, Pressed, Refused, choices_as_text, hand_on
from channels.chunks import Chunk, split_text
from channels.stream_reply import StreamedReply

log = logging.getLogger("decapod.channels")


@dataclass(frozen=True, slots=True)
class FileUpload:
    """One file for a chat. `kind` says how it should show: "photo" (a picture), "voice" (a
    voice message: OGG/Opus), "audio" (a playable audio file) or "document" (a download)."""

    conversation: Conversation
    data: bytes
    name: str
    mime: str
    kind: str = "document"
    caption: str = ""


#: the channel classes that set `sends_typing` themselves (the others have it computed)
_TYPING_SET_BY_CLASS: weakref.WeakSet[type] = weakref.WeakSet()


class BaseChannel(StreamedReply):
    """Base class for adapters. Limits are per platform; the config may lower them."""

    #: the platform's type name in config (`type = "telegram"`)
    type: ClassVar[str] = ""
    max_message_len: int = 4000
    supports_edit: bool = False
    #: seconds between streaming edits of one message (platforms allow ~1/s)
    edit_interval: float = 1.0
    #: minimum seconds between two sends to one chat
    chat_interval: float = 0.0
    typing_interval: float = 5.0
    #: the platform shows a typing notice: set for each class from whether it overrides
    #: `_typing`, unless the class (or the nearest one it derives from that decides) set it
    #: itself, so a platform without one gets no task per answer for it
    sends_typing: bool = False
    max_send_attempts: int = 5
    #: renders `OutboundMessage.choices` as native buttons; otherwise they become text lines
    supports_buttons: bool = False
    #: tries of one call that fails transiently (5xx, network), the first after this pause,
    #: each next one after twice the one before
    max_transient_attempts: int = 3
    retry_backoff_s: float = 0.5
    #: a text the platform finds too long (SendSmaller) is not cut into pieces shorter than
    #: this: below it the refusal stands (never below split_text's smallest limit, 16)
    smallest_piece: int = 16
    #: the largest file the platform takes from a bot
    max_upload_bytes: int = 50 * 1024 * 1024
    #: voice answers go as voice messages (OGG/Opus); otherwise as an audio file (MP3)
    sends_voice_notes: bool = False
    #: the identity channel whose people are the operator at this machine while this
    #: channel runs (the console's own name); None on a platform's channel
    operator_console: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "sends_typing" in cls.__dict__:
            _TYPING_SET_BY_CLASS.add(cls)
            return
        # the nearest class that decides: one that set it itself (a subclass of a platform
        # that turned it off keeps it off), or one with a `_typing` of its own
        for klass in cls.__mro__:
            if klass in _TYPING_SET_BY_CLASS:
                cls.sends_typing = bool(klass.__dict__["sends_typing"])
                return
            if klass is BaseChannel or "_typing" in klass.__dict__:
                cls.sends_typing = klass is not BaseChannel
                return

    def __init__(self, name: str) -> None:
        self.name = name
        self.sink: InboundSink | None = None
        #: the shared command table, set by the gateway before start (menus, slash commands)
        self.commands: list[CommandSpec] = []
        self._chat_next: dict[str, float] = {}
        self._chat_locks: dict[str, asyncio.Lock] = {}
        self._paused_until = 0.0
        self._background: set[asyncio.Future[None]] = set()
        #: the live buttons; adapters with native buttons name the file an earlier version
        #: kept them in, for its import into the store
        self.buttons = ButtonBook(None)

    # lifecycle (adapters extend) ----------------------------------------------------------
    async def publish_commands(self, commands: list[CommandSpec]) -> None:
        """Adapters with a command menu or slash commands extend this to offer the table."""
        self.commands = commands

    def use_state(self, state: ChannelState) -> None:
        """Keep what must outlive a message (buttons, and an adapter's own) in the store,
        shared by every replica. Set by the gateway before start; adapters extend."""
        self.buttons.use(state, self.name)

    async def start(self, sink: InboundSink) -> None:
        self.sink = sink

    async def stop(self) -> None:
        self.sink = None

    def health(self) -> dict[str, Any]:
        return {"type": self.type, "running": self.sink is not None}

    # receiving on one replica only (bot.cluster.node.ExclusiveReceiver) --------------------
    #: False when set before `start`: connect for sending only, until `start_receiving`
    receive_on_start: bool = True
    #: False when set before `start`: the platform's command menu is left as it is until
    #: `publish_commands` (the gateway's, once its warm-up has registered every command), so
    #: it is set once, not with the start's shorter table and then again
    publish_on_start: bool = True

    def receives_exclusively(self) -> bool:
        return False

    async def start_receiving(self) -> None:
        return None

    async def stop_receiving(self) -> None:
        return None

    def after_ready(self) -> None:
        """The start is over: begin, in the background, what was left out of it."""
        return None

    # platform hooks ------------------------------------------------------------------------
    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        raise NotImplementedError

    async def _edit_text(self, ref: SentRef, text: str) -> None:
        """Replace a sent message's text. EditRejected when that message cannot be edited
        any more; the rest of the answer then goes out in new messages."""
        raise NotImplementedError

    async def _send_buttons(
        self, message: OutboundMessage, text: str, buttons: list[Button]
    ) -> SentRef:
        """Send `text` with `buttons` under it (adapters with `supports_buttons`)."""
        raise NotImplementedError

    async def _typing(self, conversation: Conversation) -> None:
        return None

    async def _send_file(self, upload: FileUpload) -> SentRef:
        raise DeliveryRefused(
            "no file sending", f"the {self.type or self.name} channel cannot send files"
        )

    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes:
        """Download an attachment's bytes (on demand, never more than `max_bytes`)."""
        raise ChannelError(f"{self.type or self.name} cannot download attachments")

    def http_routes(self) -> list[HttpRoute]:
        """Platform callbacks to serve on the gateway's HTTP server: none unless webhooks."""
        return []

    async def on_denied(self, message: InboundMessage) -> None:
        """Access was denied without a reply: nothing is left open, unless a platform says."""
        return None

    async def _pace(self, conversation: Conversation) -> None:
        """Wait until a send to this chat is allowed. Adapters add platform-wide limits."""
        now = time.monotonic()
        wait = max(self._paused_until - now, self._chat_next.get(conversation.chat_id, 0) - now)
        if wait > 0:
            await asyncio.sleep(wait)
        self._chat_next[conversation.chat_id] = time.monotonic() + self.chat_interval

    def split(self, text: str) -> list[Chunk]:
        """The messages `text` needs, with the span of `text` each one shows."""
        return split_text(text, self.max_message_len)

    def chunks(self, text: str) -> list[str]:
        return [chunk.text for chunk in self.split(text)]

    # the shared path -----------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> SentRef:
        """Send a whole message, chunked; returns the reference of the last chunk.

        A chunk that keeps failing raises its ChannelError with how far the text got
        (`delivered`, `unsent`), so a caller that keeps the text for a later try keeps only
        what the person has not seen."""
        with_buttons = bool(message.choices) and self.supports_buttons
        # without buttons, the choices go out as lines after the text
        chunks = self.split(message.text if with_buttons else choices_as_text(message))
        plain = dataclasses.replace(message, choices=()) if with_buttons else message
        refs: list[SentRef] = []
        for i, chunk in enumerate(chunks):
            try:
                if with_buttons and i == len(chunks) - 1:
                    # the buttons go under the last chunk, where the question ends
                    refs.append(await self._send_with_buttons(message, chunk.text))
                else:
                    refs.append(await self._send_chunk(plain, chunk.text))
            except ChannelError as exc:
                if exc.delivered:  # pieces of this chunk were shown (`_send_pieces`)
                    shown = chunk.part(Chunk("", exc.delivered, exc.delivered))
                    _note_delivered(
                        exc, message.text, shown, Chunk(exc.reopen, 0, 0, len(exc.reopen))
                    )
                elif i:
                    _note_delivered(exc, message.text, chunks[i - 1], chunk)
                raise
        return refs[-1]

    async def _send_with_buttons(self, message: OutboundMessage, text: str) -> SentRef:
        buttons = await self.buttons.issue(message, text)
        return await self._send_pieces(message, text, buttons)

    async def take_press(
        self, press: Press, meta: dict[str, Any] | None = None
    ) -> Pressed | Refused:
        """A button press as the presser's own command (channels/buttons.py). Refused: the
        adapter shows the reason to the presser alone, and nothing else happens."""
        return await hand_on(self.buttons, self.sink, press, meta or {})

    async def send_file(
        self,
        conversation: Conversation,
        data: bytes,
        name: str,
        mime: str,
        *,
        kind: str = "document",
        caption: str = "",
    ) -> SentRef:
        """Send one file, paced and retried like a message: a transient failure is tried
        again, a refusal (too large, not allowed here) is raised as DeliveryRefused."""
        if len(data) > self.max_upload_bytes:
            raise DeliveryRefused(
                "file too large",
                f"{name} is {len(data)} bytes; the {self.type or self.name} channel takes at "
                f"most {self.max_upload_bytes} bytes",
            )
        upload = FileUpload(conversation, data, name, mime, kind, caption)
        async with self._chat_locks.setdefault(conversation.chat_id, asyncio.Lock()):
            ref: SentRef = await self._retrying(conversation, self._send_file, upload)
            return ref

    async def _send_chunk(self, message: OutboundMessage, text: str) -> SentRef:
        return await self._send_pieces(message, text, [])

    async def _send_pieces(
        self, message: OutboundMessage, text: str, buttons: list[Button]
    ) -> SentRef:
        """Send `text` as one message (with `buttons` under it), retried. Where the platform
        finds it too long (SendSmaller), it goes in pieces, the buttons under the last, each
        retried on its own: a piece that fails is never the reason a shown one goes again.
        One that keeps failing raises with `delivered` at the end of the last piece shown,
        as an offset in `text`, and `reopen` the code fence the rest starts with."""
        pieces = [Chunk(text, 0, len(text))]
        shown: Chunk | None = None
        ref: SentRef | None = None
        # one lock per chat keeps chunks and replies in order under concurrent senders
        async with self._chat_locks.setdefault(message.conversation.chat_id, asyncio.Lock()):
            while pieces:
                piece = pieces.pop(0)
                send: tuple[Any, ...] = (self._send_text, message, piece.text)
                if buttons and not pieces:
                    send = (self._send_buttons, message, piece.text, buttons)
                try:
                    ref = await self._retrying(message.conversation, *send)
                except ChannelError as exc:
                    parts = self._cut(piece, exc) if isinstance(exc, SendSmaller) else []
                    if parts:
                        pieces[:0] = parts
                        log.info("%s: a text was too long; sending it in pieces", self.name)
                        continue
                    if shown is not None:
                        _note_delivered(exc, text, shown, piece)
                    raise
                shown = piece
        assert ref is not None
        return ref

    def _cut(self, piece: Chunk, refused: SendSmaller) -> list[Chunk]:
        """`piece` in parts of at most `refused.limit`, each with its span in the source of
        `piece`; none (the refusal stands) below `smallest_piece` or where no cut helps."""
        if refused.limit < max(self.smallest_piece, 16):
            return []
        parts = split_text(piece.text, refused.limit)
        return [piece.part(part) for part in parts] if len(parts) > 1 else []

    async def _retrying(self, conversation: Conversation, fn: Any, *args: Any) -> Any:
        transient = 0
        for attempt in range(1, self.max_send_attempts + 1):
            await self._pace(conversation)
            try:
                return await fn(*args)
            except RateLimited as exc:
                if attempt == self.max_send_attempts:
                    raise
                # the platform throttles the whole bot, not only this chat
                self._paused_until = time.monotonic() + exc.retry_after
                log.warning("rate limited on %s; waiting %.1fs", self.name, exc.retry_after)
            except (EditRejected, DeliveryRefused):  # SendSmaller too: `_send_pieces` cuts
                raise  # the same call cannot succeed
            except ChannelError as exc:
                transient += 1
                if transient >= self.max_transient_attempts or attempt == self.max_send_attempts:
                    raise
                pause = self.retry_backoff_s * 2 ** (transient - 1)
                log.info("%s: %s; trying again in %.1fs", self.name, exc, pause)
                await asyncio.sleep(pause)
        raise ChannelError("unreachable")


def _note_delivered(exc: ChannelError, text: str, shown: Chunk, failed: Chunk) -> None:
    """Tell `exc` how much of `text` the chunks up to `shown` showed. Choice lines sent as
    text are not counted: a retry of the text sends them again, with what is left."""
    if shown.end >= len(text):
        exc.delivered, exc.reopen = len(text), ""
    else:
        exc.delivered, exc.reopen = shown.end, failed.text[: failed.lead]
