"""The shared send path every adapter inherits: chunking, pacing, retry on RateLimited,
typing while the model works, and streaming by throttled edits of one message.

An adapter implements the platform calls only: `_send_text`, and where the platform has
them `_edit_text` and `_typing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

from bot.commands import CommandSpec
from bot.errors import ChannelError, RateLimited
from bot.messages import Attachment, Conversation, InboundMessage, OutboundMessage, SentRef
from channels import HttpRoute, InboundSink

log = logging.getLogger("decapod.channels")

_FENCE = "```"


def chunk_text(text: str, limit: int) -> list[str]:
    """Split at paragraph, then line, then word boundaries; never inside a code fence
    without closing it at the end of one chunk and reopening it at the start of the next."""
    if limit < 16:
        raise ValueError("chunk limit too small")
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        budget = limit - len(_FENCE) - 1  # room to close a fence we split
        cut = _best_cut(rest, budget)
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip("\n")
        if head.count(_FENCE) % 2 == 1:
            lang = _open_fence_lang(head)
            head += "\n" + _FENCE
            rest = f"{_FENCE}{lang}\n{rest}"
        if head:
            chunks.append(head)
    if rest.strip() or not chunks:
        chunks.append(rest)
    return chunks


def _best_cut(text: str, budget: int) -> int:
    window = text[:budget]
    for sep in ("\n\n", "\n", " "):
        pos = window.rfind(sep)
        if pos > budget // 3:
            return pos + len(sep)
    return budget


def _open_fence_lang(head: str) -> str:
    line = head[head.rfind(_FENCE) + len(_FENCE) :].split("\n", 1)[0]
    return line.strip() if line.strip().isidentifier() else ""


class BaseChannel:
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
    max_send_attempts: int = 5

    def __init__(self, name: str) -> None:
        self.name = name
        self.sink: InboundSink | None = None
        #: the shared command table, set by the gateway before start (menus, slash commands)
        self.commands: list[CommandSpec] = []
        self._chat_next: dict[str, float] = {}
        self._chat_locks: dict[str, asyncio.Lock] = {}
        self._paused_until = 0.0
        self._background: set[asyncio.Future[None]] = set()

    # lifecycle (adapters extend) ----------------------------------------------------------
    async def start(self, sink: InboundSink) -> None:
        self.sink = sink

    async def stop(self) -> None:
        self.sink = None

    def health(self) -> dict[str, Any]:
        return {"type": self.type, "running": self.sink is not None}

    # platform hooks ------------------------------------------------------------------------
    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        raise NotImplementedError

    async def _edit_text(self, ref: SentRef, text: str) -> None:
        raise NotImplementedError

    async def _typing(self, conversation: Conversation) -> None:
        return None

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

    # the shared path -----------------------------------------------------------------------
    async def send(self, message: OutboundMessage) -> SentRef:
        """Send a whole message, chunked; returns the reference of the last chunk."""
        refs = [await self._send_chunk(message, c) for c in self.chunks(message.text)]
        return refs[-1]

    def chunks(self, text: str) -> list[str]:
        return chunk_text(text, self.max_message_len)

    async def _send_chunk(self, message: OutboundMessage, text: str) -> SentRef:
        # one lock per chat keeps chunks and replies in order under concurrent senders
        lock = self._chat_locks.setdefault(message.conversation.chat_id, asyncio.Lock())
        async with lock:
            ref: SentRef = await self._retrying(
                message.conversation, self._send_text, message, text
            )
            return ref

    async def _retrying(self, conversation: Conversation, fn: Any, *args: Any) -> Any:
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
        raise ChannelError("unreachable")

    async def reply(self, template: OutboundMessage, deltas: AsyncIterator[str]) -> list[SentRef]:
        """Deliver a streamed answer: typing until text arrives, then (where the platform can
        edit) one message edited at most every `edit_interval`, split when it outgrows the
        limit; finally the complete text. Only redacted, final-safe text reaches here."""
        state = _StreamState()
        ticker = asyncio.create_task(self._stream_ticker(template, state))
        try:
            async for delta in deltas:
                state.text += delta
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        await self._flush(template, state, final=True)
        return state.refs

    async def _stream_ticker(self, template: OutboundMessage, state: _StreamState) -> None:
        next_typing = 0.0
        while True:
            now = time.monotonic()
            if not state.text.strip() and now >= next_typing:
                # Shielded: when the answer ends the ticker, a typing request still in flight
                # finishes on its own. Cancelled mid-flight, an SDK's HTTP request can keep its
                # pooled connection (python-telegram-bot's does), and after pool-size such
                # replies every send waits for a connection that never frees.
                typing = asyncio.ensure_future(self._typing(template.conversation))
                self._background.add(typing)
                typing.add_done_callback(_forget_typing(self._background))
                with contextlib.suppress(ChannelError):
                    await asyncio.shield(typing)
                next_typing = now + self.typing_interval
            if self.supports_edit and state.text.strip():
                await self._flush(template, state, final=False)
            await asyncio.sleep(self.edit_interval if state.text.strip() else 0.25)

    async def _flush(self, template: OutboundMessage, state: _StreamState, *, final: bool) -> None:
        # Chunking the whole text each time keeps message i showing chunk i: chunk boundaries
        # depend only on the text before them, so finished messages never change again.
        async with state.lock:
            if not state.text.strip():
                return
            for i, piece in enumerate(self.chunks(state.text)):
                if i >= len(state.refs):
                    state.refs.append(await self._send_chunk(template, piece))
                    state.shown.append(piece)
                    state.last_edit = time.monotonic()  # a send counts towards the edit rate
                elif state.shown[i] != piece:
                    wait = state.last_edit + self.edit_interval - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    await self._retrying(
                        template.conversation, self._edit_text, state.refs[i], piece
                    )
                    state.shown[i] = piece
                    state.last_edit = time.monotonic()


def _forget_typing(
    background: set[asyncio.Future[None]],
) -> Callable[[asyncio.Future[None]], None]:
    """A done-callback: drop the finished typing request, and take its failure (a typing
    notice that failed after the answer went out matters to no one)."""

    def done(future: asyncio.Future[None]) -> None:
        background.discard(future)
        if not future.cancelled():
            future.exception()

    return done


class _StreamState:
    def __init__(self) -> None:
        self.text = ""
        self.refs: list[SentRef] = []
        self.shown: list[str] = []  # what each sent message shows now
        self.last_edit = 0.0
        self.lock = asyncio.Lock()
