"""Discord REST for replies: channel messages, interaction webhooks, typing, DM channels.

Every call goes through discord.py's HTTP client, so its per-route buckets and its handling
of a 429 apply: it sleeps `retry_after` and tries again when the wait is short. A wait longer
than the client's `max_ratelimit_timeout`, or a 429 without Discord's `Via` header (an edge
ban that discord.py does not retry), surfaces here as bot.errors.RateLimited, and the shared
send path in channels/base.py pauses the channel and retries.

A slash command's answer goes through the interaction: the first message edits the deferred
response (PATCH /webhooks/{app}/{token}/messages/@original), further chunks are followups
(POST /webhooks/{app}/{token}). Interaction tokens expire after 15 minutes, so from a minute
before that the answer goes to the channel as ordinary messages, and a streamed message whose
token runs out mid-answer continues as a channel message.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import discord
from discord.http import Route

from bot.errors import ChannelError, RateLimited
from bot.messages import Conversation, ConversationKind, OutboundMessage, SentRef

INTERACTION_TOKEN_TTL_S = 15 * 60.0
#: stop using an interaction's token this long before Discord expires it (clock skew, slow calls)
TOKEN_MARGIN_S = 60.0
#: message flag: no link previews (they can carry data out of a conversation)
SUPPRESS_EMBEDS = 1 << 2
_DM_CACHE_LIMIT = 4096


def token_fresh(created: float | None, now: float | None = None) -> bool:
    if created is None:
        return False
    age = (time.time() if now is None else now) - created
    return age < INTERACTION_TOKEN_TTL_S - TOKEN_MARGIN_S


class DiscordSender:
    def __init__(self, client: discord.Client, allowed_mentions: list[str]) -> None:
        self.client = client
        parse = sorted(set(allowed_mentions))
        #: the same policy on every message; replies ping their author only if users may be
        self.allowed_mentions = {"parse": parse, "replied_user": "users" in parse}
        self._dm_channels: dict[str, str] = {}  # user id -> DM channel id
        #: interactions whose deferred response has been replaced by an answer (id -> created)
        self._answered: dict[str, float] = {}

    # the platform calls --------------------------------------------------------------------
    async def request(self, route: Route, **kwargs: Any) -> Any:
        try:
            return await self.client.http.request(route, **kwargs)
        except discord.RateLimited as exc:
            raise RateLimited(exc.retry_after) from None
        except discord.HTTPException as exc:
            if exc.status == 429:
                raise RateLimited(_retry_after(exc)) from None
            # route.path is the template: no ids or interaction tokens in the message
            raise ChannelError(
                f"Discord {route.method} {route.path}: HTTP {exc.status} {exc.text}"
            ) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ChannelError(f"Discord {route.method} {route.path}: {exc!r}") from None

    def remember_dm(self, user_id: str, channel_id: str) -> None:
        if len(self._dm_channels) >= _DM_CACHE_LIMIT:
            self._dm_channels.clear()
        self._dm_channels[user_id] = channel_id

    async def channel_for(self, conversation: Conversation, meta: dict[str, Any]) -> str:
        """The Discord channel a conversation is answered in."""
        if meta.get("channel_id"):
            return str(meta["channel_id"])
        if conversation.thread_id:
            return conversation.thread_id
        if conversation.kind is not ConversationKind.DM:
            return conversation.chat_id
        known = self._dm_channels.get(conversation.chat_id)
        if known is None:
            route = Route("POST", "/users/@me/channels")
            channel = await self.request(route, json={"recipient_id": conversation.chat_id})
            known = str(channel["id"])
            self.remember_dm(conversation.chat_id, known)
        return known

    def _body(self, text: str, *, link_preview: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"content": text, "allowed_mentions": self.allowed_mentions}
        if not link_preview:
            body["flags"] = SUPPRESS_EMBEDS
        return body

    # sending ---------------------------------------------------------------------------------
    async def send(self, message: OutboundMessage, text: str) -> SentRef:
        meta = message.meta
        created = meta.get("interaction_created")
        if meta.get("interaction_token") and token_fresh(created):
            return await self._send_interaction(message, text)
        channel_id = await self.channel_for(message.conversation, meta)
        body = self._body(text, link_preview=message.link_preview)
        if message.reply_to and message.conversation.kind is not ConversationKind.DM:
            body["message_reference"] = {
                "message_id": message.reply_to,
                "fail_if_not_exists": False,
            }
        route = Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id)
        sent = await self.request(route, json=body)
        return SentRef(message.conversation, str(sent["id"]), {"channel_id": channel_id})

    async def _send_interaction(self, message: OutboundMessage, text: str) -> SentRef:
        meta = message.meta
        app_id, token = str(meta["application_id"]), str(meta["interaction_token"])
        hook = {
            "application_id": app_id,
            "interaction_token": token,
            "interaction_created": meta["interaction_created"],
            "channel_id": meta.get("channel_id"),
        }
        body = self._body(text, link_preview=message.link_preview)
        interaction_id = str(meta["interaction_id"])
        if interaction_id not in self._answered:
            await self._edit_webhook(app_id, token, "@original", body)
            self._mark_answered(interaction_id, float(meta["interaction_created"]))
            return SentRef(message.conversation, "@original", hook)
        route = Route(
            "POST", "/webhooks/{webhook_id}/{webhook_token}", webhook_id=app_id, webhook_token=token
        )
        sent = await self.request(route, json=body, params={"wait": "true"})
        return SentRef(message.conversation, str(sent["id"]), hook)

    def _mark_answered(self, interaction_id: str, created: float) -> None:
        now = time.time()
        for key, at in list(self._answered.items()):
            if now - at > INTERACTION_TOKEN_TTL_S:
                del self._answered[key]
        self._answered[interaction_id] = created

    async def _edit_webhook(
        self, app_id: str, token: str, message_id: str, body: dict[str, Any]
    ) -> None:
        route = Route(
            "PATCH",
            "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
            webhook_id=app_id,
            webhook_token=token,
            message_id=message_id,
        )
        await self.request(route, json=body)

    async def edit(self, ref: SentRef, text: str) -> None:
        meta = ref.meta
        if "interaction_token" in meta and "moved_to" not in meta:
            if token_fresh(meta["interaction_created"]):
                body = self._body(text)
                token = str(meta["interaction_token"])
                await self._edit_webhook(str(meta["application_id"]), token, ref.message_id, body)
                return
            # The token ran out mid-answer: the rest of this message continues in the channel.
            template = OutboundMessage(
                ref.conversation, text, meta={"channel_id": meta.get("channel_id")}
            )
            moved = await self.send(template, text)
            meta["moved_to"] = moved.message_id
            meta["channel_id"] = moved.meta["channel_id"]
            return
        channel_id = str(meta["channel_id"])
        message_id = str(meta.get("moved_to") or ref.message_id)
        route = Route(
            "PATCH",
            "/channels/{channel_id}/messages/{message_id}",
            channel_id=channel_id,
            message_id=message_id,
        )
        await self.request(route, json=self._body(text))

    async def typing(self, conversation: Conversation) -> None:
        channel_id = await self.channel_for(conversation, {})
        await self.request(Route("POST", "/channels/{channel_id}/typing", channel_id=channel_id))


def _retry_after(exc: discord.HTTPException) -> float:
    """The wait a 429 asks for: the precise bucket reset if given, else Retry-After."""
    headers = exc.response.headers
    for name in ("X-RateLimit-Reset-After", "Retry-After"):
        try:
            return max(0.0, float(headers[name]))
        except (KeyError, ValueError):
            continue
    return 1.0
