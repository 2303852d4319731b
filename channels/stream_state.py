"""The state of one streamed reply (`BaseChannel.reply`): the answer's text, the messages
that show it, and the ticker's naps, which the first text and the end cut short."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bot.errors import DeliveryRefused
from bot.messages import SentRef
from channels import ReplyProgress


def _wake(nap: asyncio.Future[None]) -> None:
    if not nap.done():
        nap.set_result(None)


@dataclass(slots=True)
class LiveMessage:
    """A message of the answer that may still be edited."""

    ref: SentRef
    text: str  # what it shows now
    end: int  # where in the answer what it shows ends


class StreamState:
    """One streamed answer as `BaseChannel.reply` shows it: the text so far, its messages,
    and the ticker's wake-ups."""

    def __init__(self, progress: ReplyProgress | None) -> None:
        self.text = ""
        self.refs: list[SentRef] = []  # every message of the answer, in order
        self.origin = 0  # where in `text` the messages that may still change begin
        self.live: list[LiveMessage] = []  # those messages
        self.last_edit = 0.0
        self.lock = asyncio.Lock()
        self.finished = asyncio.Event()  # every delta has arrived
        self.has_text = False  # some of `text` is not blank
        self._nap: asyncio.Future[None] | None = None
        self.stalled = False  # a send failed while streaming: wait for the final flush
        self.refused: DeliveryRefused | None = None
        self.progress = progress

    async def nap(self, seconds: float | None) -> None:
        """Sleep up to `seconds` (None: until woken); `poke` (the first text, the end) wakes
        it early. A timer and a future: cheaper than `wait_for` on an Event, which makes a
        task per wait."""
        if self.finished.is_set() or (seconds is not None and seconds <= 0):
            return
        loop = asyncio.get_running_loop()
        self._nap = nap = loop.create_future()
        timer = loop.call_later(seconds, _wake, nap) if seconds is not None else None
        try:
            await nap
        finally:
            if timer is not None:
                timer.cancel()
            self._nap = None

    def poke(self) -> None:
        if self._nap is not None:
            _wake(self._nap)

    async def report(self) -> None:
        if self.progress is not None:
            upto = self.live[-1].end if self.live else self.origin
            await self.progress.shown(self.refs, upto)
