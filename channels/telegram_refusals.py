"""Telegram's refusals as Decapod's errors: which Bad Request texts a retry cannot change,
and what each one means for a send (channels/telegram_outbound.py)."""

from __future__ import annotations

from telegram.error import BadRequest, Forbidden, InvalidToken, TelegramError

from bot.errors import ChannelError, ConversationGone, DeliveryRefused, EditRejected
from channels.telegram_polling import describe

# Bad Request texts (lowercase, as python-telegram-bot words them) that a retry cannot change
_EDIT_REJECTED = ("message to edit not found", "message can't be edited")
_GONE = ("chat not found", "group is deactivated", "peer_id_invalid")
_REFUSED = (
    "message thread not found",
    "topic_closed",
    "topic_deleted",
    "not enough rights to send",
    "have no rights to send",
    "chat_write_forbidden",
)


class TooLong(DeliveryRefused):
    """Telegram's "message is too long": the same text can never go; a smaller one can."""


def entities_rejected(exc: BadRequest) -> bool:
    return "can't parse entities" in str(exc).lower()


def classified(exc: TelegramError) -> ChannelError:
    """A refusal by Telegram as one of Decapod's errors. Forbidden: the bot was blocked,
    kicked, or is no member; a wrong token (InvalidToken) fails every send alike."""
    reason = exc.message.lower()
    detail = f"telegram: {describe(exc)}"
    if isinstance(exc, Forbidden) or any(text in reason for text in _GONE):
        return ConversationGone(reason, detail)
    if "message is too long" in reason:
        return TooLong(reason, detail)
    if isinstance(exc, InvalidToken) or any(text in reason for text in _REFUSED):
        return DeliveryRefused(reason, detail)
    if any(text in reason for text in _EDIT_REJECTED):
        return EditRejected(detail)
    return ChannelError(detail)
