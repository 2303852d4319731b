"""Discord replies through discord.py's public API: channel messages, interaction answers,
typing and DM channels.

Channel messages are `PartialMessageable.send` and `PartialMessage.edit` on
`client.get_partial_messageable(id)` (no channel cache needed); DMs to a person named only
by user id open with `Client.create_dm`. discord.py's HTTP client applies its per-route
buckets and waits out a short 429 by itself; what it raises becomes bot.errors in
channels/discord_errors.py.

A slash command is acknowledged at once with a placeholder message ("thinking…") sent with
link previews suppressed; its answer replaces that placeholder, and chunks past the first
are followups. Both go through the interaction's webhook (`discord.Webhook.partial`, the
same object as `Interaction.followup`): it needs only the application id and the token,
which the delivery keeps, so an answer resumed after a restart reaches the same messages.
A placeholder rather than Discord's "thinking" deferral, because an edit cannot set the
SUPPRESS_EMBEDS flag through discord.py, while a message created with it keeps it.

Interaction tokens expire after 15 minutes. From a minute before that (or as soon as
Discord answers 401 Invalid Webhook Token), editing an interaction message raises
EditRejected: the shared send path then continues the answer in new messages from where
that message stopped, and those go to the channel. The first of them starts with
CONTINUED, so the part in the channel reads as the rest of the interaction's answer.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable
from typing import Any

import discord

from bot.errors import EditRejected
from bot.messages import Conversation, ConversationKind, OutboundMessage, SentRef
from channels.discord_errors import TokenExpired, translated

INTERACTION_TOKEN_TTL_S = 15 * 60.0
#: stop using an interaction's token this long before Discord expires it (clock skew, slow calls)
TOKEN_MARGIN_S = 60.0
#: what a slash command shows until its answer replaces it
PLACEHOLDER = "*thinking…*"
#: the first line of an interaction's answer that moved to the channel mid-answer
CONTINUED = "*(continued)*\n"
_CACHE_LIMIT = 4096


def token_fresh(created: float | None, now: float | None = None) -> bool:
    if created is None:
        return False
    age = (time.time() if now is None else now) - created
    return age < INTERACTION_TOKEN_TTL_S - TOKEN_MARGIN_S


def allowed_mentions(allowed: Iterable[str]) -> discord.AllowedMentions:
    """What the bot's messages may ping (nothing by default); replies ping their author
    only when users may be pinged."""
    mentions = set(allowed)
    return discord.AllowedMentions(
        everyone="everyone" in mentions,
        users="users" in mentions,
        roles="roles" in mentions,
        replied_user="users" in mentions,
    )


class DiscordSender:
    def __init__(self, client: discord.Client, mentions: discord.AllowedMentions) -> None:
        self.client = client
        #: passed with every message: the policy holds whatever the client's default says
        self.mentions = mentions
        self._dm_channels: dict[str, str] = {}  # user id -> DM channel id
        #: interaction id -> whether its placeholder still waits for the answer
        self._placeholder_free: dict[str, bool] = {}
        #: interactions whose token Discord refused before the clock said so (id -> True)
        self._token_dead: dict[str, bool] = {}
        #: interactions whose answer already continues in the channel (id -> True)
        self._moved: dict[str, bool] = {}

    # slash commands --------------------------------------------------------------------------
    async def acknowledge(self, interaction: discord.Interaction) -> str | None:
        """Answer a slash command with the placeholder; the placeholder's message id.
        Raises discord.HTTPException when Discord no longer takes an acknowledgement."""
        response = await interaction.response.send_message(
            PLACEHOLDER, suppress_embeds=True, allowed_mentions=self.mentions
        )
        if response.message_id is None:
            return None
        _remember(self._placeholder_free, str(interaction.id), True)
        return str(response.message_id)

    async def _placeholder_waits(self, webhook: discord.Webhook, meta: dict[str, Any]) -> bool:
        """Whether the answer's first message should replace the placeholder. Asked of
        Discord only when this process did not acknowledge the command (a restart)."""
        interaction_id = str(meta["interaction_id"])
        free = self._placeholder_free.get(interaction_id)
        if free is None:
            try:
                async with translated("read the interaction's placeholder", editing=True):
                    shown = await webhook.fetch_message(int(meta["interaction_message_id"]))
                free = shown.content == PLACEHOLDER
            except TokenExpired:
                raise
            except EditRejected:
                free = False  # someone deleted it: the answer comes as followups
        _remember(self._placeholder_free, interaction_id, False)
        return free

    def _token_usable(self, meta: dict[str, Any]) -> bool:
        return token_fresh(meta.get("interaction_created")) and not self._token_dead.get(
            str(meta.get("interaction_id"))
        )

    def _webhook(self, meta: dict[str, Any]) -> discord.Webhook:
        return discord.Webhook.partial(
            int(meta["application_id"]), str(meta["interaction_token"]), client=self.client
        )

    # sending -----------------------------------------------------------------------------------
    async def send(
        self, message: OutboundMessage, text: str, view: discord.ui.View | None = None
    ) -> SentRef:
        """`view`: buttons under the message."""
        meta = message.meta
        note = ""
        if meta.get("interaction_message_id"):
            interaction_id = str(meta["interaction_id"])
            if self._token_usable(meta):
                try:
                    return await self._send_interaction(message, text, view)
                except TokenExpired:
                    _remember(self._token_dead, interaction_id, True)
                except EditRejected:
                    pass  # the placeholder was deleted: this part goes to the channel
            if self._placeholder_free.get(interaction_id) is not True and not self._moved.get(
                interaction_id
            ):
                # part of this answer is on screen in the interaction (or may be: a restart)
                note = CONTINUED
            _remember(self._moved, interaction_id, True)
        channel_id = await self.channel_for(message.conversation, meta)
        channel = self.client.get_partial_messageable(int(channel_id))
        reference = None
        if message.reply_to and message.conversation.kind is not ConversationKind.DM:
            reference = discord.MessageReference(
                message_id=int(message.reply_to),
                channel_id=int(channel_id),
                fail_if_not_exists=False,
            )
        async with translated("send to channel"):
            sent = await channel.send(
                note + text,
                allowed_mentions=self.mentions,
                suppress_embeds=not message.link_preview,
                reference=reference,  # type: ignore[arg-type]  # None (the default): no reply
                **_with(view),
            )
        ref_meta = {"channel_id": channel_id, "note": note} if note else {"channel_id": channel_id}
        return SentRef(message.conversation, str(sent.id), ref_meta)

    async def send_file(
        self, conversation: Conversation, data: bytes, name: str, caption: str
    ) -> SentRef:
        """A file as an attachment of a new message (multipart), with `caption` as its text."""
        channel_id = await self.channel_for(conversation, {})
        channel = self.client.get_partial_messageable(int(channel_id))
        async with translated("upload a file"):
            sent = await channel.send(
                caption or None,
                file=discord.File(io.BytesIO(data), filename=name),
                allowed_mentions=self.mentions,
                suppress_embeds=True,
            )
        return SentRef(conversation, str(sent.id), {"channel_id": channel_id})

    async def _send_interaction(
        self, message: OutboundMessage, text: str, view: discord.ui.View | None
    ) -> SentRef:
        meta = message.meta
        webhook = self._webhook(meta)
        if await self._placeholder_waits(webhook, meta):
            async with translated("answer the interaction", editing=True):
                sent = await webhook.edit_message(
                    int(meta["interaction_message_id"]),
                    content=text,
                    allowed_mentions=self.mentions,
                    **_with(view),
                )
        else:
            # editing: a refused token means the same as for an edit (answer elsewhere)
            async with translated("send a followup", editing=True):
                sent = await webhook.send(
                    text,
                    wait=True,
                    allowed_mentions=self.mentions,
                    suppress_embeds=not message.link_preview,
                    **_with(view),
                )
        hook = {
            "interaction_id": meta["interaction_id"],
            "application_id": meta["application_id"],
            "interaction_token": meta["interaction_token"],
            "interaction_created": meta["interaction_created"],
            "channel_id": meta.get("channel_id"),
        }
        return SentRef(message.conversation, str(sent.id), hook)

    async def edit(self, ref: SentRef, text: str) -> None:
        """Raises EditRejected when the message is gone or its interaction token expired."""
        meta = ref.meta
        if "interaction_token" in meta:
            if not self._token_usable(meta):
                raise EditRejected("the interaction's token expired")
            try:
                async with translated("edit the interaction answer", editing=True):
                    await self._webhook(meta).edit_message(
                        int(ref.message_id), content=text, allowed_mentions=self.mentions
                    )
            except TokenExpired:
                _remember(self._token_dead, str(meta["interaction_id"]), True)
                raise
            return
        channel = self.client.get_partial_messageable(int(meta["channel_id"]))
        message = channel.get_partial_message(int(ref.message_id))
        async with translated("edit", editing=True):
            await message.edit(content=meta.get("note", "") + text, allowed_mentions=self.mentions)

    # conversations -------------------------------------------------------------------------------
    def remember_dm(self, user_id: str, channel_id: str) -> None:
        _remember(self._dm_channels, user_id, channel_id)

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
            async with translated("open a DM"):
                dm = await self.client.create_dm(discord.Object(int(conversation.chat_id)))
            known = str(dm.id)
            self.remember_dm(conversation.chat_id, known)
        return known

    async def typing(self, conversation: Conversation) -> None:
        channel_id = await self.channel_for(conversation, {})
        async with translated("typing"):
            await self.client.get_partial_messageable(int(channel_id)).typing()


def _with(view: discord.ui.View | None) -> dict[str, Any]:
    """The `view` keyword when there are buttons: discord.py tells None (remove the
    components) from not given."""
    return {"view": view} if view is not None else {}


def _remember(cache: dict[str, Any], key: str, value: Any) -> None:
    """A bounded map: the oldest entry goes when it is full."""
    cache.pop(key, None)
    if len(cache) >= _CACHE_LIMIT:
        del cache[next(iter(cache))]
    cache[key] = value
