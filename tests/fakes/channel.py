"""A channel that records what the gateway sends, for tests of the core."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from bot.errors import ChannelError
from bot.messages import (
    Attachment,
    Command,
    Conversation,
    ConversationKind,
    Identity,
    InboundMessage,
    OutboundMessage,
    SentRef,
)
from channels.base import BaseChannel
from channels.buttons import Button


class RecordingChannel(BaseChannel):
    type = "recording"
    supports_edit = True
    edit_interval = 0.05
    typing_interval = 0.05

    def __init__(
        self, name: str = "test", max_message_len: int = 4000, *, console: bool = False
    ) -> None:
        super().__init__(name)
        self.max_message_len = max_message_len
        #: a platform's channel unless a test says console=True: then it stands for the
        #: console as code injects it (`decapod chat`'s terminal), whose people are the
        #: operator; the default grants no operator rights a test did not ask for
        self.operator_console = name if console else None
        self.messages: dict[str, str] = {}  # message id -> current text
        self.order: list[tuple[str, str]] = []  # (chat id, message id) in send order
        self.calls: list[tuple[str, str, float]] = []  # (kind, text, monotonic time)
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self.delivery_ids = itertools.count(1)
        self.button_rows: dict[str, list[Button]] = {}  # message id -> buttons under it
        #: attachment ref -> bytes that `fetch` downloads (a ref not here: a failed download)
        self.files: dict[str, bytes] = {}
        self.fetched: list[tuple[str, int]] = []  # (ref, max_bytes) of each fetch
        #: this many next sends fail as a platform's 502 does (each try of the channel's
        #: retries counts one)
        self.failing_sends = 0
        #: once this many messages went out, every next send fails the same way (an outage
        #: in the middle of a text sent in several messages); None: no outage
        self.sends_before_outage: int | None = None

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        if self.failing_sends > 0:
            self.failing_sends -= 1
            raise ChannelError("the platform answered 502")
        if self.sends_before_outage is not None and len(self.order) >= self.sends_before_outage:
            raise ChannelError("the platform answered 502")
        mid = str(next(self._ids))
        self.messages[mid] = text
        self.order.append((message.conversation.chat_id, mid))
        await self._record("send", text)
        return SentRef(message.conversation, mid)

    async def _send_buttons(
        self, message: OutboundMessage, text: str, buttons: list[Button]
    ) -> SentRef:
        ref = await self._send_text(message, text)
        self.button_rows[ref.message_id] = buttons
        return ref

    async def _edit_text(self, ref: SentRef, text: str) -> None:
        self.messages[ref.message_id] = text
        await self._record("edit", text)

    async def _typing(self, conversation: Conversation) -> None:
        await self._record("typing", "")

    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes:
        self.fetched.append((attachment.ref, max_bytes))
        data = self.files.get(attachment.ref)
        if data is None:
            raise ChannelError(f"the platform answered 404 for {attachment.name}")
        if len(data) > max_bytes:
            raise ChannelError(f"{attachment.name} is larger than {max_bytes} bytes")
        return data

    async def _record(self, kind: str, text: str) -> None:
        async with self._changed:
            self.calls.append((kind, text, time.monotonic()))
            self._changed.notify_all()

    def texts(self, chat_id: str | None = None) -> list[str]:
        return [self.messages[m] for c, m in self.order if chat_id is None or c == chat_id]

    async def wait_for_messages(
        self, count: int, chat_id: str | None = None, timeout: float = 15.0
    ) -> list[str]:
        """Until `count` texts arrived; `timeout` only bounds a failing test's wait."""

        async def enough() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.texts(chat_id)) >= count)

        await asyncio.wait_for(enough(), timeout)
        return self.texts(chat_id)

    def inbound(
        self,
        text: str,
        *,
        user: str = "u1",
        chat: str | None = None,
        kind: ConversationKind = ConversationKind.DM,
        delivery_id: str | None = None,
        **extra: Any,
    ) -> InboundMessage:
        return InboundMessage(
            id=delivery_id or f"d{next(self.delivery_ids)}",
            identity=Identity(self.name, user, user.title()),
            conversation=Conversation(self.name, chat or user, kind),
            text=text,
            command=Command.parse(text),
            **extra,
        )

    async def push(self, text: str, **kwargs: Any) -> InboundMessage:
        message = self.inbound(text, **kwargs)
        assert self.sink is not None, "channel not started"
        await self.sink(message)
        return message
