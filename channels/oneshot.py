"""The channel of `decapod ask`: one message in, its answer out to a text stream.

The sender is the operator at this machine, as in `decapod chat` (identity `console:<user>`,
so the same person and memory), but each ask is its own conversation: a throwaway session
that starts without history. On a terminal the answer is written as it streams, one piece
behind, because the turn's last piece may be a note about a failure, which the command line
reports on stderr instead.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any, TextIO

from bot.errors import ConfigError
from bot.messages import (
    Command,
    Conversation,
    ConversationKind,
    Identity,
    InboundMessage,
    OutboundMessage,
    SentRef,
    person_id_problem,
)
from channels import ReplyProgress
from channels.base import BaseChannel

#: the identity channel of the operator's terminal (`decapod chat`)
CONSOLE = "console"


def refuse_unusable_user(key: str) -> None:
    """A start-up error for a terminal user name that cannot be a person (ConfigError): said
    once here, not on every message."""
    problem = person_id_problem(key)
    if problem is not None:
        raise ConfigError(f"{problem} (the terminal's user name comes from $LOGNAME or $USER)")


class OneShotChannel(BaseChannel):
    type = "oneshot"
    max_message_len = 1_000_000
    #: speaks as the operator's terminal does (the person of `decapod chat`)
    operator_console: str | None = CONSOLE

    def __init__(
        self,
        name: str | None = None,
        *,
        out: TextIO | None = None,
        stream: bool = False,
        user: str | None = None,
    ) -> None:
        super().__init__(name or f"ask-{uuid.uuid4().hex[:12]}")
        self.out = out if out is not None else sys.stdout
        self.stream = stream
        self.user = user or getpass.getuser()
        refuse_unusable_user(f"{CONSOLE}:{self.user}")
        self.conversation = Conversation(self.name, self.user, ConversationKind.DM)
        #: everything said in the conversation, in order (a command's reply, or the answer)
        self.parts: list[str] = []
        #: the last piece of a streamed answer, not yet written (see the module docstring)
        self.held = ""
        self.written = False
        self.answered = asyncio.Event()

    async def ask(self, text: str) -> InboundMessage:
        """Hand the question to the gateway; returns once it is stored and queued."""
        assert self.sink is not None, "the gateway starts the channel first"
        message = InboundMessage(
            id=uuid.uuid4().hex,
            identity=Identity(CONSOLE, self.user, self.user),
            conversation=self.conversation,
            text=text,
            command=Command.parse(text),
        )
        await self.sink(message)
        return message

    @property
    def text(self) -> str:
        return "".join(self.parts) + self.held

    def release(self) -> None:
        """Write what is held back (the answer ended well)."""
        self._write(self.held)
        self.parts.append(self.held)
        self.held = ""

    def _write(self, text: str) -> None:
        if self.stream and text:
            self.out.write(text)
            self.out.flush()
            self.written = True

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        self.parts.append(text)
        self._write(text)
        self.answered.set()
        return SentRef(message.conversation, uuid.uuid4().hex)

    async def reply(
        self,
        template: OutboundMessage,
        deltas: AsyncIterator[str],
        progress: ReplyProgress | None = None,
    ) -> list[SentRef]:
        refs = [SentRef(template.conversation, uuid.uuid4().hex)]
        shown = 0
        async for delta in deltas:
            if self.held:
                self._write(self.held)
                self.parts.append(self.held)
                shown += len(self.held)
                if progress is not None:
                    await progress.shown(refs, shown)
            self.held = delta
        self.answered.set()
        return refs

    def health(self) -> dict[str, Any]:
        return {"type": self.type, "running": self.sink is not None}
