"""Discord messages and slash commands, normalized into InboundMessage.

Where a message was said:
- a DM is Conversation(kind=DM, chat_id=<user id>), so a person's DMs are one session and
  owner notices and reminders can reach them by user id alone;
- a guild channel is Conversation(kind=CHANNEL, chat_id=<channel id>);
- a thread is Conversation(kind=CHANNEL, chat_id=<parent channel id>, thread_id=<thread id>):
  its own session, while `access.groups` entries keyed by the parent channel cover its threads.

`meta["channel_id"]` is the Discord channel to answer in (the DM channel, the channel or the
thread). Slash commands add the interaction's id, token, application id and creation time,
and the id of the placeholder that acknowledged it: the reply path answers through the
interaction's webhook with them.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import discord
from yarl import URL

from bot.errors import ChannelError
from bot.messages import (
    Attachment,
    Command,
    Conversation,
    ConversationKind,
    Identity,
    InboundMessage,
    size_text,
)
from bot.proxy_env import ProxyLookup
from channels.http_errors import describe_http_error

log = logging.getLogger("decapod.channels.discord")

#: message types that carry what a person wrote (others are joins, pins, thread notices...)
_CONVERSATIONAL = (discord.MessageType.default, discord.MessageType.reply)
_VOICE_MESSAGE_FLAG = 1 << 13
_PARENT_CACHE_LIMIT = 4096
#: CDN links can redirect (a signed URL renewed, another media host); more than this is a loop
_MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


#: the domains of Discord's CDN (cdn.discordapp.com, media.discordapp.net) and its own
_DISCORD_DOMAINS = ("discordapp.com", "discordapp.net", "discord.com")


def _may_follow(first: str, target: str) -> bool:
    """A download's redirect stays within the attachment URL's own origin, or goes to
    Discord's CDN over https: never to an address the redirect picks (one inside this
    network, a cloud metadata address, whose answer would reach the model), never down
    from https to plain http."""
    to, origin = urlsplit(target), urlsplit(first)
    host = (to.hostname or "").rstrip(".")
    discords = host in _DISCORD_DOMAINS or host.endswith(tuple("." + d for d in _DISCORD_DOMAINS))
    if to.scheme == "https" and discords:
        return True
    return (to.scheme, to.netloc) == (origin.scheme, origin.netloc)


def attachment_kind(content_type: str, flags: int) -> str:
    if flags & _VOICE_MESSAGE_FLAG:
        return "voice"
    major = content_type.partition("/")[0]
    return {"image": "image", "audio": "audio", "video": "video"}.get(major, "document")


class Normalizer:
    """Builds InboundMessages for one configured channel. Looks up, once per channel, the
    parent of a channel that discord.py has not cached (it may be a thread)."""

    def __init__(self, name: str, client: discord.Client) -> None:
        self.name = name
        self.client = client
        self._parents: dict[int, int | None] = {}

    def identity(self, user: discord.abc.User) -> Identity:
        return Identity(self.name, str(user.id), user.display_name, user.bot)

    async def conversation(
        self, channel: Any, guild_id: int | None, user_id: int
    ) -> tuple[Conversation, str]:
        """(conversation, id of the Discord channel to answer in)."""
        answer_in = str(channel.id)
        if guild_id is None:
            if isinstance(channel, discord.GroupChannel):
                return Conversation(self.name, answer_in, ConversationKind.GROUP), answer_in
            return Conversation(self.name, str(user_id), ConversationKind.DM), answer_in
        parent = await self._parent_of(channel)
        if parent is None:
            return Conversation(self.name, answer_in, ConversationKind.CHANNEL), answer_in
        thread = Conversation(self.name, str(parent), ConversationKind.CHANNEL, answer_in)
        return thread, answer_in

    async def _parent_of(self, channel: Any) -> int | None:
        """The parent channel of a thread; None for anything else."""
        if isinstance(channel, discord.Thread):
            return channel.parent_id
        if not isinstance(channel, discord.PartialMessageable):
            return None
        if channel.id in self._parents:
            return self._parents[channel.id]
        try:
            fetched = await self.client.fetch_channel(channel.id)
        except discord.DiscordException as exc:
            log.warning("cannot look up channel %s (%s); treating it as a channel", channel.id, exc)
            return None
        parent = fetched.parent_id if isinstance(fetched, discord.Thread) else None
        if len(self._parents) >= _PARENT_CACHE_LIMIT:
            self._parents.clear()
        self._parents[channel.id] = parent
        return parent

    async def from_message(self, message: discord.Message) -> InboundMessage | None:
        """None for what is not a person's message: system notices, the bot's own."""
        me = self.client.user
        if me is None or message.author.id == me.id or message.type not in _CONVERSATIONAL:
            return None
        guild_id = message.guild.id if message.guild is not None else None
        conversation, channel_id = await self.conversation(
            message.channel, guild_id, message.author.id
        )
        text, mentioned = self._strip_mentions(message, me.id)
        reference = message.reference
        resolved = reference.resolved if reference is not None else None
        replied_to_me = isinstance(resolved, discord.Message) and resolved.author.id == me.id
        parts = tuple(
            Attachment(
                kind=attachment_kind(a.content_type or "", message.flags.value),
                ref=a.url,
                name=a.filename,
                mime=a.content_type or "",
                size=a.size,
                meta={"id": str(a.id)},
            )
            for a in message.attachments
        )
        return InboundMessage(
            id=str(message.id),
            identity=self.identity(message.author),
            conversation=conversation,
            text=text,
            parts=parts,
            command=Command.parse(text, me.name),
            mentioned=mentioned or replied_to_me,
            reply_to=str(reference.message_id) if reference and reference.message_id else None,
            platform_message_id=str(message.id),
            meta={"channel_id": channel_id, "guild_id": str(guild_id) if guild_id else None},
        )

    def _strip_mentions(self, message: discord.Message, me_id: int) -> tuple[str, bool]:
        """The text without the bot's user or role mention, and whether one was there."""
        tokens = [f"<@{me_id}>", f"<@!{me_id}>"]
        mentioned = any(user.id == me_id for user in message.mentions)
        role = message.guild.self_role if message.guild is not None else None
        if role is not None:
            tokens.append(f"<@&{role.id}>")
            mentioned = mentioned or role in message.role_mentions
        text = message.content
        for token in tokens:
            text = text.replace(token, " ")
        return re.sub(r"[ \t]{2,}", " ", text).strip(), mentioned

    async def from_command(
        self,
        interaction: discord.Interaction,
        name: str,
        args: str,
        *,
        placeholder: str | None = None,
    ) -> InboundMessage:
        """A slash command; `placeholder` is the id of the message that acknowledged it.
        Without one its answer goes to the channel: an interaction that could not be
        acknowledged cannot be answered through its webhook."""
        channel: Any = interaction.channel
        if channel is None:  # discord.py could not model the channel: answer where it was used
            channel = self.client.get_partial_messageable(
                interaction.channel_id or 0, guild_id=interaction.guild_id
            )
        conversation, channel_id = await self.conversation(
            channel, interaction.guild_id, interaction.user.id
        )
        meta: dict[str, Any] = {
            "channel_id": channel_id,
            "guild_id": str(interaction.guild_id) if interaction.guild_id else None,
        }
        if placeholder is not None:
            meta.update(
                interaction_id=str(interaction.id),
                interaction_message_id=placeholder,
                interaction_token=interaction.token,
                application_id=str(interaction.application_id),
                interaction_created=interaction.created_at.timestamp(),
            )
        return InboundMessage(
            id=str(interaction.id),
            identity=self.identity(interaction.user),
            conversation=conversation,
            text=f"/{name} {args}".rstrip(),
            command=Command(name, args),
            mentioned=True,
            meta=meta,
        )


class Downloads:
    """Attachments from Discord's CDN, on demand, on one HTTP session opened at first use."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._proxies = ProxyLookup()

    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes:
        if attachment.size is not None and attachment.size > max_bytes:
            size, limit = size_text(attachment.size), size_text(max_bytes)
            raise ChannelError(f"{attachment.name or 'the file'} is {size}; the limit is {limit}")
        proxy = await self._proxies.for_url(attachment.ref)
        # after the lookup: a stop while it ran closed the session and left None
        if self._session is None:
            # the environment's proxy from `_proxies`, once per address: trust_env looks it up
            # in two thread hops per request
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=60), trust_env=False
            )
        try:
            return await self._read(self._session, attachment, proxy, max_bytes)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChannelError(
                f"cannot download {attachment.name}: {describe_http_error(exc)}"
            ) from None

    async def _read(
        self,
        session: aiohttp.ClientSession,
        attachment: Attachment,
        proxy: URL | None,
        max_bytes: int,
    ) -> bytes:
        """The file's bytes, following up to `_MAX_REDIRECTS` redirects by hand: each target
        must pass `_may_follow` and gets its own proxy (aiohttp's own following would keep
        the first address's)."""
        url = attachment.ref
        for _hop in range(_MAX_REDIRECTS + 1):
            if session.closed:  # stopped while the redirect's proxy was looked up
                raise ChannelError(f"the download of {attachment.name} was stopped")
            async with session.get(url, proxy=proxy, allow_redirects=False) as resp:
                if resp.status in _REDIRECTS:
                    target = urljoin(url, resp.headers.get("Location", ""))
                    if not _may_follow(attachment.ref, target):
                        raise ChannelError(
                            f"Discord CDN redirected {attachment.name} away from Discord's CDN"
                        )
                    url = target
                    proxy = await self._proxies.for_url(url)
                    continue
                if resp.status != 200:
                    raise ChannelError(f"Discord CDN answered {resp.status} for {attachment.name}")
                data = bytearray()
                async for block in resp.content.iter_chunked(64 * 1024):
                    data += block
                    if len(data) > max_bytes:
                        raise ChannelError(
                            f"{attachment.name} is larger than {size_text(max_bytes)}"
                        )
                return bytes(data)
        raise ChannelError(f"Discord CDN redirected {attachment.name} too many times")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
