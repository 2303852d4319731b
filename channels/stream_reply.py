"""Streaming an answer by edits: the text read from the model is shown in one message
edited at most every `edit_interval`, split into more when it outgrows the platform's
limit, and continued in a new message when one can no longer be edited. Part of every
channel's send path (channels/base.py), which runs the typing notice and the ticker that
calls `_flush`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from bot.errors import ChannelError, DeliveryRefused, EditRejected
from bot.messages import Conversation, OutboundMessage, SentRef
from channels import ReplyProgress
from channels.chunks import Chunk
from channels.stream_state import LiveMessage, StreamState

log = logging.getLogger("decapod.channels")


class _Channel(Protocol):
    """What these methods use of the channel (BaseChannel, which inherits them)."""

    name: str
    edit_interval: float

    def split(self, text: str) -> list[Chunk]: ...
    async def _send_chunk(self, message: OutboundMessage, text: str) -> SentRef: ...
    async def _edit_text(self, ref: SentRef, text: str) -> None: ...
    async def _retrying(self, conversation: Conversation, fn: Any, *args: Any) -> Any: ...
    async def _stream_ticker(self, template: OutboundMessage, state: StreamState) -> None: ...
    async def _flush(self, template: OutboundMessage, state: StreamState) -> None: ...
    async def _show(self, template: OutboundMessage, state: StreamState) -> bool: ...
    async def _edited(self, conversation: Conversation, ref: SentRef, text: str) -> bool: ...


class StreamedReply:
    """The streamed-reply methods of BaseChannel, which inherits them."""

    async def reply(
        self: _Channel,
        template: OutboundMessage,
        deltas: AsyncIterator[str],
        progress: ReplyProgress | None = None,
    ) -> list[SentRef]:
        """Deliver a streamed answer: typing until text arrives, then (where the platform can
        edit) one message edited at most every `edit_interval`, split when it outgrows the
        limit; finally the complete text. Only redacted, final-safe text reaches here.

        `progress` hears of every send and edit. A message that can no longer be edited
        stays as it is, and the answer goes on in new messages from the first character it
        does not show. DeliveryRefused stops reading `deltas` at once; a send that keeps
        failing otherwise is raised once the whole answer was read (so it can be kept and
        sent later)."""
        state = StreamState(progress)
        ticker = asyncio.create_task(self._stream_ticker(template, state))
        try:
            async for delta in deltas:
                state.text += delta
                if not state.has_text and delta.strip():
                    state.has_text = True
                    state.poke()
                if state.refused is not None:
                    break
        except BaseException:
            ticker.cancel()
            with contextlib.suppress(BaseException):
                await ticker
            raise
        # woken, not cancelled: a send or edit in flight finishes (see _stream_ticker)
        state.finished.set()
        state.poke()
        await ticker
        if state.refused is not None:
            raise state.refused
        await self._flush(template, state)
        return state.refs

    async def _flush(self: _Channel, template: OutboundMessage, state: StreamState) -> None:
        async with state.lock:
            while not await self._show(template, state):
                pass  # a message could not be edited: go on from what it shows

    async def _show(self: _Channel, template: OutboundMessage, state: StreamState) -> bool:
        """Bring the messages up to `state.text`; False when one of them could not be edited.

        Chunking the text from `origin` each time keeps message i showing chunk i: a chunk's
        boundaries depend only on the text before it, so messages before the last never
        change again, and only the last one can be the one that cannot be edited."""
        tail = state.text[state.origin :]
        if not state.live:  # a new message does not start with the blank that ended the last
            blank = len(tail) - len(tail.lstrip())
            state.origin += blank
            tail = tail[blank:]
        if not tail.strip():
            return True
        for i, chunk in enumerate(self.split(tail)):
            end = state.origin + chunk.end
            if i >= len(state.live):
                ref = await self._send_chunk(template, chunk.text)
                state.refs.append(ref)
                state.live.append(LiveMessage(ref, chunk.text, end))
                state.last_edit = time.monotonic()  # a send counts towards the edit rate
            elif state.live[i].text != chunk.text:
                wait = state.last_edit + self.edit_interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                shown = state.live[i]
                if not await self._edited(template.conversation, shown.ref, chunk.text):
                    # never edited again; what it does not show starts the next message
                    state.origin = shown.end
                    state.live.clear()
                    return False
                shown.text, shown.end = chunk.text, end
                state.last_edit = time.monotonic()
            else:
                state.live[i].end = end
                continue
            await state.report()
        return True

    async def _edited(self: _Channel, conversation: Conversation, ref: SentRef, text: str) -> bool:
        try:
            await self._retrying(conversation, self._edit_text, ref, text)
        except DeliveryRefused:
            raise
        except EditRejected as exc:
            log.info("%s: message %s cannot be edited (%s)", self.name, ref.message_id, exc)
            return False
        except ChannelError as exc:
            log.warning("%s: editing message %s failed: %s", self.name, ref.message_id, exc)
            return False
        return True
