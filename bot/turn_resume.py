"""Another try of a delivery whose answer is stored: what the person has not seen yet is
sent without asking the model again (bot/delivery.py records what was shown)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bot.delivery import INTERRUPTED_NOTE, Outbox, delivery_key
from bot.errors import ChannelError
from bot.messages import InboundMessage, OutboundMessage
from bot.providers.base import ChatMessage
from bot.sessions import Session
from bot.store.deliveries import DeliveryUpdate
from bot.store.repos import TurnRecord
from bot.turn_media import user_message_of

if TYPE_CHECKING:
    from bot.gateway import Gateway


async def resume_shown(
    gw: Gateway, session: Session, message: InboundMessage, outbox: Outbox
) -> None:
    """Another try of a delivery whose answer the person has partly seen, or that is
    stored whole: no model call. A complete answer goes on from the first character not
    shown; one the model was still writing when the process ended gets a note, and is
    kept in the history as far as it was shown."""
    state = outbox.state
    if not state.final:
        await gw.say(message, INTERRUPTED_NOTE)

        async def record() -> None:
            await gw.sessions.load(session)
            assert session.row is not None
            turn_id = f"{message.conversation.channel}:{message.id}"
            user = user_message_of(message, message.text, gw.redactor.redact)
            records = [
                TurnRecord(turn_id, user, identity_key=message.identity.key),
                TurnRecord(turn_id, ChatMessage("assistant", state.answer), outcome="interrupted"),
            ]
            key = delivery_key(message)
            ids = await gw.store.turns.add(
                session.row.id, records, inbound_done=key, delivery=DeliveryUpdate(key, state)
            )
            rows = [(row_id, rec.message) for row_id, rec in zip(ids, records, strict=True)]
            gw.sessions.remember(session, rows)

        # the note is said once, also when the store refuses the record (tried again alone)
        await gw.deliveries.store_or_keep(message, record)
        return
    rest = state.answer[state.shown :]
    if rest.strip():
        channel = gw.channels[message.conversation.channel]
        try:
            await channel.reply(reply_template(message), outbox.fenced(_once(rest)), outbox)
        except ChannelError as exc:
            await gw.deliveries.failed(message, outbox, exc)
            return
    await gw.store.deliveries.finish(delivery_key(message), state)


def reply_template(message: InboundMessage) -> OutboundMessage:
    """What an answer to `message` is sent as (the text comes from the stream)."""
    return OutboundMessage(
        message.conversation, "", reply_to=message.platform_message_id, meta=message.meta
    )


async def _once(text: str) -> AsyncIterator[str]:
    yield text
