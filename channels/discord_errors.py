"""What a failed Discord call means for the send path: the one place discord.py's
exceptions become bot.errors.

- `EditRejected`: the message cannot be edited any more. 10008 Unknown Message (deleted),
  and `TokenExpired` for 50027 Invalid Webhook Token and 10015 Unknown Webhook (the
  interaction's token expired). The shared send path continues the answer in new messages.
  Only calls made with `editing=True` raise it; the same codes elsewhere are a refusal.
- `ConversationGone`: the conversation is out of reach for good. 10003 Unknown Channel,
  50001 Missing Access (the bot no longer sees the channel), 50007 Cannot send messages to
  this user (DMs closed, or the bot is blocked), 10013 Unknown User.
- `DeliveryRefused`: any other 4xx (50013 Missing Permissions, a rejected body, a revoked
  token). The same request will never succeed, so it is not retried.
- `RateLimited`: a 429 that discord.py did not wait out by itself (longer than the
  client's `max_ratelimit_timeout`, or from Discord's edge without a `Via` header).
- `ChannelError`: transient. 5xx (after discord.py's own retries), timeouts and network
  errors: the send path retries with backoff.

Messages name the action ("edit", "send to channel"), never an id or an interaction token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import discord

from bot.errors import ChannelError, ConversationGone, DeliveryRefused, EditRejected, RateLimited
from channels.http_errors import describe_http_error

UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
UNKNOWN_USER = 10013
UNKNOWN_WEBHOOK = 10015
MISSING_ACCESS = 50001
CANNOT_DM_USER = 50007
MISSING_PERMISSIONS = 50013
INVALID_WEBHOOK_TOKEN = 50027

#: the interaction's token no longer works (it expired, or Discord forgot the interaction)
TOKEN_GONE = frozenset({UNKNOWN_WEBHOOK, INVALID_WEBHOOK_TOKEN})
CONVERSATION_GONE = frozenset({UNKNOWN_CHANNEL, MISSING_ACCESS, CANNOT_DM_USER, UNKNOWN_USER})


class TokenExpired(EditRejected):
    """Nothing more can be sent or edited through this interaction."""


def classify(exc: BaseException, action: str, *, editing: bool = False) -> ChannelError:
    """The bot.errors exception for a failed call; `editing` when it edited a message."""
    if isinstance(exc, ChannelError):
        return exc
    if isinstance(exc, discord.RateLimited):
        return RateLimited(exc.retry_after)
    if isinstance(exc, discord.HTTPException):
        return _from_http(exc, action, editing=editing)
    return ChannelError(f"Discord {action}: {describe_http_error(exc)}")


def _from_http(exc: discord.HTTPException, action: str, *, editing: bool) -> ChannelError:
    status, code = exc.status, exc.code
    if status == 429:
        return RateLimited(_retry_after(exc))
    what = f"{exc.text or exc.response.reason} ({code})" if code else f"HTTP {status}"
    message = f"Discord {action}: HTTP {status} {what}"
    if status >= 500 or status == 408:
        return ChannelError(message)
    if editing and code in TOKEN_GONE:
        return TokenExpired(message)
    if editing and code == UNKNOWN_MESSAGE:
        return EditRejected(message)
    if code in CONVERSATION_GONE:
        return ConversationGone(what, message)
    return DeliveryRefused(what, message)


def _retry_after(exc: discord.HTTPException) -> float:
    """The wait a 429 asks for: the precise bucket reset if given, else Retry-After."""
    headers = exc.response.headers
    for name in ("X-RateLimit-Reset-After", "Retry-After"):
        try:
            return max(0.0, float(headers[name]))
        except (KeyError, ValueError):
            continue
    return 1.0


#: what a Discord call can raise besides discord.py's own errors
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


@asynccontextmanager
async def translated(action: str, *, editing: bool = False) -> AsyncIterator[None]:
    """Run a discord.py call; its failure leaves as a bot.errors.ChannelError."""
    try:
        yield
    except (discord.DiscordException, *NETWORK_ERRORS) as exc:
        raise classify(exc, action, editing=editing) from None
