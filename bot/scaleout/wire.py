"""The link between the receiver and one turn process: length-prefixed pickled frames over a
socketpair made by the receiver (no path on disk; only the two processes hold its ends).

A frame is (kind, call id, payload). Receiver -> turn process: "hello", "accept", "result",
"shown", "choices", "stop". Turn process -> receiver: "ready", "call", "delta", "end",
"choices" (a /model choice changed: the others read them again)."""

from __future__ import annotations

import asyncio
import pickle
from dataclasses import dataclass
from typing import Any

from bot.errors import ChannelError, ConversationGone, DeliveryRefused

Frame = tuple[str, int, Any]
_HEAD = 4


@dataclass(frozen=True, slots=True)
class ChannelShape:
    """What a turn process needs to know of a channel it sends through the receiver."""

    name: str
    max_message_len: int
    max_upload_bytes: int
    sends_voice_notes: bool
    #: the receiver's channel speaks for the operator's console (channels.Channel)
    operator_console: str | None


@dataclass(frozen=True, slots=True)
class Hello:
    config: Any  # bot.config.Config
    index: int
    count: int
    channels: tuple[ChannelShape, ...]


class Wire:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    def send(self, kind: str, call: int, payload: Any = None) -> None:
        if self._writer.is_closing():
            return  # the other side is gone; its loss is handled where it is read
        body = pickle.dumps((kind, call, payload), protocol=pickle.HIGHEST_PROTOCOL)
        self._writer.write(len(body).to_bytes(_HEAD, "big") + body)

    async def recv(self) -> Frame | None:
        """The next frame; None once the other side has closed its end."""
        try:
            size = int.from_bytes(await self._reader.readexactly(_HEAD), "big")
            frame: Frame = pickle.loads(await self._reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return frame

    def close(self) -> None:
        self._writer.close()


def portable(exc: BaseException) -> ChannelError:
    """A channel's error as one that unpickles the same on the other side: a refusal stays a
    refusal with its reason (an adapter's or SendSmaller's own arguments would not restore, so
    it goes as the plain one), anything else a ChannelError; each says how far its text got."""
    same: ChannelError
    if isinstance(exc, DeliveryRefused):
        kind = ConversationGone if isinstance(exc, ConversationGone) else DeliveryRefused
        same = kind(exc.reason, str(exc))
    elif isinstance(exc, ChannelError):
        same = ChannelError(str(exc))
    else:
        return ChannelError(f"{type(exc).__name__}: {exc}")
    # how far a text sent in several messages got (see BaseChannel.send)
    same.delivered, same.reopen = exc.delivered, exc.reopen
    return same
