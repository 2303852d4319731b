"""The terminal channel (`decapod chat`): the same gateway core, no account anywhere.

The person at the terminal is the owner. Replies stream to the terminal as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any, TextIO

from bot.messages import (
    Command,
    Conversation,
    ConversationKind,
    Identity,
    InboundMessage,
    OutboundMessage,
    SentRef,
)
from channels import InboundSink
from channels.base import BaseChannel


class ConsoleChannel(BaseChannel):
    type = "console"
    max_message_len = 1_000_000

    def __init__(
        self,
        name: str = "console",
        *,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        user: str | None = None,
        prompt: str = "you> ",
        reply_timeout_s: float = 300.0,
    ) -> None:
        super().__init__(name)
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.user = user or getpass.getuser()
        self.prompt = prompt
        self.reply_timeout_s = reply_timeout_s
        self.conversation = Conversation(name, self.user, ConversationKind.DM)
        self.closed = asyncio.Event()
        self._answered = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, sink: InboundSink) -> None:
        await super().start(sink)
        self._reader = asyncio.create_task(self._read_loop(sink))

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await super().stop()

    async def _read_loop(self, sink: InboundSink) -> None:
        try:
            while True:
                self._write(self.prompt)
                line = await asyncio.to_thread(self.stdin.readline)
                if not line:
                    return
                text = line.rstrip("\n")
                if not text.strip():
                    continue
                if text.strip() in ("/exit", "/quit"):
                    return
                self._answered.clear()
                await sink(self._inbound(text))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._answered.wait(), self.reply_timeout_s)
        finally:
            self.closed.set()

    def _inbound(self, text: str) -> InboundMessage:
        return InboundMessage(
            id=uuid.uuid4().hex,
            identity=Identity(self.name, self.user, self.user),
            conversation=self.conversation,
            text=text,
            command=Command.parse(text),
        )

    def _write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        self._write(f"bot> {text}\n")
        self._answered.set()
        return SentRef(message.conversation, uuid.uuid4().hex)

    async def reply(self, template: OutboundMessage, deltas: AsyncIterator[str]) -> list[SentRef]:
        started = False
        async for delta in deltas:
            if not started:
                self._write("bot> ")
                started = True
            self._write(delta)
        self._write("\n" if started else "bot> (no answer)\n")
        self._answered.set()
        return [SentRef(template.conversation, uuid.uuid4().hex)]

    def health(self) -> dict[str, Any]:
        return {"type": self.type, "running": not self.closed.is_set()}


def create(name: str, channel_config: Any, config: Any) -> ConsoleChannel:
    return ConsoleChannel(name)
