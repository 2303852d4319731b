"""A turn's user message: its text with what came attached, read through the media intake
(bot/media/) where the gateway has one, or only named where it was not read."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.commands import Reply
from bot.errors import ChannelError, DeliveryRefused
from bot.messages import InboundMessage
from bot.providers.base import ChatMessage
from bot.stop import STOPPED_NOTE, RunningTurn, TurnStopped, stoppable_step

if TYPE_CHECKING:
    from bot.gateway import Gateway

log = logging.getLogger("decapod.media")


async def user_message_with_media(
    gw: Gateway, message: InboundMessage, text: str, person: str, running: RunningTurn
) -> tuple[ChatMessage | None, bool]:
    """The user message with what came attached (bot/media/), and whether it holds text
    from a file. Problems with attachments, and what a voice note was heard to say, are
    said before the answer; None when nothing is left to answer (or /stop ended it)."""
    media = gw.media
    if not message.parts or media is None:
        return user_message_of(message, text, gw.redactor.redact), False
    channel = gw.channels[message.conversation.channel]
    model = await gw.model_choices.first_for(person)
    reading = media.take(message, channel, gw.deps.sandbox, gw.redactor.redact, model)
    # a download or a transcription can take minutes: /stop ends it as it ends an answer
    try:
        intake = await stoppable_step(reading, running)
    except TurnStopped:
        await gw.say(message, STOPPED_NOTE)
        return None, False  # nothing to answer; the delivery is done
    for note in intake.notes():
        try:
            await gw.say(message, note)
        except DeliveryRefused:
            raise  # the chat takes nothing: the answer could not go either
        except ChannelError as exc:
            # a courtesy line; failing it must not give up the answer, whose own sending
            # is kept and tried again when the platform fails it too
            log.warning("a note before the answer in %s was not sent: %s", message.session_key, exc)
    return intake.user_message(text), intake.untrusted


def user_message_of(
    message: InboundMessage, text: str, redact: Callable[[str], str]
) -> ChatMessage:
    return ChatMessage("user", text + redact(describe_parts(message)))


def describe_parts(message: InboundMessage) -> str:
    """Attachments named for the model where they were not read (a retry of an interrupted
    turn, a gateway without the media intake)."""
    if not message.parts:
        return ""
    names = [
        f"{p.name or p.kind} ({p.mime or p.kind}" + (f", {p.size // 1024} KB)" if p.size else ")")
        for p in message.parts
    ]
    return "\n[attached: " + "; ".join(names) + "]"


def with_unused_parts_named(reply: str | Reply, message: InboundMessage, command: str) -> Reply:
    """A command's answer that also says the attachments it came with were not used (only
    `/ask` reads them): a photo captioned `/remind ...` is not dropped without a word."""
    answer = reply if isinstance(reply, Reply) else Reply(reply)
    if not message.parts:
        return answer
    names = ", ".join(p.name or p.kind for p in message.parts)
    note = (
        f"\n\n(Not used: {names}. /{command} takes only its text; "
        "send the file again with a question, or with /ask, to have it read.)"
    )
    return dataclasses.replace(answer, text=answer.text + note)
