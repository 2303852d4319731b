"""Streaming an answer by edits: the text read from the model is shown in one message
edited at most every `edit_interval`, split into more when it outgrows the platform's
limit, and continued in a new message when one can no longer be edited; until the first
text arrives, the platform's typing notice. Part of every channel's send path
(channels/base.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from bot.errors import ChannelError, DeliveryRefused, EditRejected
from bot.messages import Conversation, OutboundMessage, SentRef
from channels import ReplyProgress
from channels.chunks import Chunk
from channels.stream_state import LiveMessage, StreamState

log = logging.getLogger("decapod.channels")

#: how long a streamed answer's first text waits before it is shown (see `_stream_ticker`)
FIRST_TEXT_WAIT_S = 0.25


class _Channel(Protocol):
    """What streaming uses of the channel (BaseChannel, which inherits `reply`)."""

    name: str
    edit_interval: float
    typing_interval: float
    supports_edit: bool
    sends_typing: bool
    _background: set[asyncio.Future[None]]

    def split(self, text: str) -> list[Chunk]: ...
    async def _send_chunk(self, message: OutboundMessage, text: str) -> SentRef: ...
    async def _edit_text(self, ref: SentRef, text: str) -> None: ...
    async def _typing(self, conversation: Conversation) -> None: ...
    async def _retrying(self, conversation: Conversation, fn: Any, *args: Any) -> Any: ...


class StreamedReply:
    """The streamed-reply method of BaseChannel, which inherits it."""

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
        sent later). Its `delivered` counts what of the answer was shown only where the
        failing message went out in part (in pieces, channels/base.py); otherwise it is 0,
        and what was shown is what `progress` heard."""
        state = StreamState(progress)
        ticker = asyncio.create_task(_stream_ticker(self, template, state))
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
        await _flush(self, template, state)
        return state.refs


async def _flush(channel: _Channel, template: OutboundMessage, state: StreamState) -> None:
    async with state.lock:
        while not await _show(channel, template, state):
            pass  # a message could not be edited: go on from what it shows


async def _show(channel: _Channel, template: OutboundMessage, state: StreamState) -> bool:
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
    for i, chunk in enumerate(channel.split(tail)):
        end = state.origin + chunk.end
        if i >= len(state.live):
            try:
                ref = await channel._send_chunk(template, chunk.text)
            except ChannelError as exc:
                if exc.delivered:
                    await _shown_in_part(state, chunk, exc)
                raise
            state.refs.append(ref)
            state.live.append(LiveMessage(ref, chunk.text, end))
            state.last_edit = time.monotonic()  # a send counts towards the edit rate
        elif state.live[i].text != chunk.text:
            wait = state.last_edit + channel.edit_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            shown = state.live[i]
            if not await edited(channel, template.conversation, shown.ref, chunk.text):
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


async def _shown_in_part(state: StreamState, chunk: Chunk, exc: ChannelError) -> None:
    """A chunk that went in pieces, of which the first `exc.delivered` characters were
    shown (channels/base.py): those pieces are messages of their own, never edited, and the
    rest starts the next message, so that the final flush does not show them again. `exc`
    then counts what was shown of the whole answer."""
    state.origin += chunk.source(exc.delivered)
    state.live.clear()
    exc.delivered = state.origin
    await state.report()


async def edited(channel: _Channel, conversation: Conversation, ref: SentRef, text: str) -> bool:
    """Replace a sent message's text; False when it cannot be edited (any more)."""
    try:
        await channel._retrying(conversation, channel._edit_text, ref, text)
    except DeliveryRefused:
        raise
    except EditRejected as exc:
        log.info("%s: message %s cannot be edited (%s)", channel.name, ref.message_id, exc)
        return False
    except ChannelError as exc:
        log.warning("%s: editing message %s failed: %s", channel.name, ref.message_id, exc)
        return False
    return True


async def _stream_ticker(channel: _Channel, template: OutboundMessage, state: StreamState) -> None:
    next_typing = 0.0
    # a platform without a typing notice (Slack, the web UI) gets no task per answer for it
    types = channel.sends_typing
    while not state.finished.is_set():
        now = time.monotonic()
        if types and not state.has_text and now >= next_typing:
            # Shielded: when the answer ends the ticker, a typing request still in flight
            # finishes on its own. Cancelled mid-flight, an SDK's HTTP request can keep its
            # pooled connection (python-telegram-bot's does), and after pool-size such
            # replies every send waits for a connection that never frees.
            typing = asyncio.ensure_future(channel._typing(template.conversation))
            channel._background.add(typing)
            typing.add_done_callback(_forget_typing(channel._background))
            with contextlib.suppress(ChannelError):
                await asyncio.shield(typing)
            next_typing = now + channel.typing_interval
        if channel.supports_edit and state.has_text and not state.stalled:
            try:
                await _flush(channel, template, state)
            except DeliveryRefused as exc:
                state.refused = exc
                return
            except ChannelError as exc:
                # the final flush tries again, with the whole answer
                log.warning("%s: streaming paused: %s", channel.name, exc)
                state.stalled = True
        if state.has_text:
            await state.nap(channel.edit_interval)
        else:
            # Woken by the first text (or the end), not polling for it: thousands of
            # turns waiting on a slow model would each wake four times a second.
            await state.nap(next_typing - time.monotonic() if types else None)
            if state.has_text:
                # the first text is shown after a short while, so that a fast answer
                # goes out in one message instead of a fragment and an edit
                await state.nap(FIRST_TEXT_WAIT_S)


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
