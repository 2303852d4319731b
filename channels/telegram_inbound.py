"""Telegram updates normalized into InboundMessage, and the memory of migrated groups.

What becomes a message, and what is deliberately dropped (docs/channels/telegram.md):
- a private chat is a DM conversation per person (its chat id is the person's user id);
  groups and supergroups are group conversations; a forum topic is a thread of its group;
- photos, documents, voice notes, audio and video become Attachment parts (fetched on demand);
- edited messages, channel posts, service messages, content without text or a file
  (stickers, polls, locations) and, in groups, commands addressed to another bot
  (`/start@other_bot`) are dropped with a debug log; a group's migration to a
  supergroup is recorded so the group keeps its session;
- messages sent on behalf of a chat (anonymous admins, linked channels) and by bots carry
  `is_bot=True`, so the access layer drops them unless the channel allows bots.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telegram import Message, MessageEntity, Update
from telegram.constants import ChatType

from bot.channel_state import ChatMoveState
from bot.messages import (
    Attachment,
    Command,
    Conversation,
    ConversationKind,
    Identity,
    InboundMessage,
)

log = logging.getLogger("decapod.channels.telegram")

_GROUP_TYPES = (ChatType.GROUP, ChatType.SUPERGROUP)


class MalformedUpdate(ValueError):
    """An update whose shape Telegram never sends; it is logged and skipped."""


@dataclass(frozen=True, slots=True)
class BotIdentity:
    id: int
    username: str


class ChatMigrations:
    """A group upgraded to a supergroup gets a new chat id. Sessions, access rules and
    history stay keyed by the original id; sends go to the newest id. Kept in the store
    (bot/channel_state.py, new id -> original id), shared by every replica, with a copy in
    memory for the sync lookups; without the store (on its own) only that copy is kept.

    An earlier version kept them in a JSON file in the home: `open` imports it once and
    renames it `*.imported`."""

    def __init__(self, path: Path | None) -> None:
        #: the JSON file an earlier version kept, imported into the store once
        self.path = path
        self.channel = ""
        self._original: dict[int, int] = {}
        self._state: ChatMoveState | None = None
        self._saving: set[asyncio.Future[None]] = set()
        #: supergroups looked up in the store once: one another replica saw moving is found
        self._checked: set[int] = set()

    def use(self, state: ChatMoveState, channel: str) -> None:
        self._state, self.channel = state, channel

    async def open(self) -> None:
        """The moves the store knows, after importing the file an earlier version kept."""
        if self._state is None:
            return
        old = await asyncio.to_thread(self._read_old_file) if self.path is not None else None
        if old is not None and self.path is not None:
            for new, orig in old.items():
                await self._state.add_chat_move(self.channel, str(orig), str(new))
            try:
                await asyncio.to_thread(self.path.replace, self.path.with_suffix(".json.imported"))
            except OSError as exc:
                log.warning("cannot rename the imported file %s: %s", self.path, exc)
        await self._reload()

    def _read_old_file(self) -> dict[int, int] | None:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {int(new): int(old) for new, old in data.items()}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring the unreadable chat list %s: %s", self.path, exc)
            return None

    async def _reload(self) -> None:
        assert self._state is not None
        moves = await self._state.chat_moves(self.channel)
        self._original.update({int(new): int(old) for new, old in moves.items()})

    async def recall_for(self, raw: Any) -> None:
        """Before a raw update from a supergroup not seen here yet: the moves the store knows,
        so one that another replica recorded is followed too. Never raises on a bad shape."""
        message = raw.get("message") if isinstance(raw, dict) else None
        chat = message.get("chat") if isinstance(message, dict) else None
        if not isinstance(chat, dict) or chat.get("type") != ChatType.SUPERGROUP:
            return
        chat_id = chat.get("id")
        if not isinstance(chat_id, int) or chat_id in self._checked or self._state is None:
            return
        self._checked.add(chat_id)
        if chat_id not in self._original:
            await self._reload()

    def original(self, chat_id: int) -> int:
        seen = {chat_id}
        while chat_id in self._original and self._original[chat_id] not in seen:
            chat_id = self._original[chat_id]
            seen.add(chat_id)
        return chat_id

    def current(self, chat_id: int) -> int:
        """The id to send to for a conversation keyed by `chat_id`."""
        newest = {old: new for new, old in self._original.items()}
        seen = {chat_id}
        while chat_id in newest and newest[chat_id] not in seen:
            chat_id = newest[chat_id]
            seen.add(chat_id)
        return chat_id

    def record(self, old: int, new: int) -> None:
        """Remember a move at once; the store has it once `saved` returns."""
        if old == new or self._original.get(new) == old:
            return
        self._original[new] = self.original(old)
        if self._state is not None:
            saving = asyncio.ensure_future(
                self._state.add_chat_move(self.channel, str(self._original[new]), str(new))
            )
            self._saving.add(saving)
            saving.add_done_callback(self._settled)
        log.info("telegram group %s moved to supergroup %s; its session continues", old, new)

    def _settled(self, saving: asyncio.Future[None]) -> None:
        self._saving.discard(saving)
        if not saving.cancelled() and saving.exception() is not None:
            log.error("could not store a chat move: %s", saving.exception())

    async def saved(self) -> None:
        """Wait until the moves recorded so far are in the store (raises if one failed)."""
        if self._saving:
            await asyncio.gather(*self._saving)


def normalize(
    update: Update, channel: str, me: BotIdentity, migrations: ChatMigrations
) -> InboundMessage | None:
    """The message for one update, or None when the update is dropped on purpose.
    Raises MalformedUpdate (or a TypeError/AttributeError from a broken shape)."""
    if update.edited_message is not None:
        log.debug("ignoring an edited message (update %s)", update.update_id)
        return None
    message = update.message
    if message is None:
        log.debug("ignoring update %s: not a new message", update.update_id)
        return None
    chat = message.chat
    if chat is None or message.message_id is None:
        raise MalformedUpdate("message without a chat or an id")
    if message.migrate_to_chat_id:
        migrations.record(chat.id, message.migrate_to_chat_id)
        return None
    if message.migrate_from_chat_id:
        migrations.record(message.migrate_from_chat_id, chat.id)
        return None
    text = message.text or message.caption or ""
    parts = _attachments(message)
    if not text.strip() and not parts:
        log.debug("ignoring update %s: a service message or unsupported content", update.update_id)
        return None
    conversation = _conversation(message, channel, migrations)
    if conversation is None:
        log.debug("ignoring update %s: chat type %s", update.update_id, chat.type)
        return None
    if conversation.kind is ConversationKind.GROUP and _for_another_bot(text, me.username):
        # "/start@other_bot": a group that needs no mention must not answer it as chat
        log.debug("ignoring update %s: a command for another bot", update.update_id)
        return None
    reply = message.reply_to_message
    # In a forum every message of a topic "replies" to the topic's first service message.
    if reply is not None and reply.forum_topic_created is not None:
        reply = None
    replied_to_bot = bool(reply and reply.from_user and reply.from_user.id == me.id)
    mentioned_by_name = _mentions(message, me)
    command = Command.parse(text, me.username)
    if mentioned_by_name and command is None:
        text = _strip_mention(text, me.username)
    return InboundMessage(
        id=str(update.update_id),
        identity=_identity(message, channel),
        conversation=conversation,
        text=text,
        parts=parts,
        command=command,
        mentioned=mentioned_by_name or replied_to_bot,
        reply_to=str(reply.message_id) if reply is not None else None,
        platform_message_id=str(message.message_id),
    )


def _conversation(
    message: Message, channel: str, migrations: ChatMigrations
) -> Conversation | None:
    chat = message.chat
    if chat.type == ChatType.PRIVATE:
        return Conversation(channel, str(chat.id), ConversationKind.DM)
    if chat.type not in _GROUP_TYPES:
        return None
    thread = None
    if message.is_topic_message and message.message_thread_id:
        thread = str(message.message_thread_id)
    return Conversation(channel, str(migrations.original(chat.id)), ConversationKind.GROUP, thread)


def _identity(message: Message, channel: str) -> Identity:
    if message.sender_chat is not None:
        # posted as a chat, not as a person: no one to pair or to hold to account
        sender = message.sender_chat
        return Identity(channel, str(sender.id), sender.title or "", is_bot=True)
    user = message.from_user
    if user is None:
        raise MalformedUpdate("message without a sender")
    return Identity(channel, str(user.id), user.full_name, is_bot=user.is_bot)


def _mentions(message: Message, me: BotIdentity) -> bool:
    kinds: list[str | None] = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
    found = message.parse_entities(kinds) if message.text else message.parse_caption_entities(kinds)
    handle = "@" + me.username.lower()
    for entity, value in found.items():
        if entity.type == MessageEntity.MENTION and value.lower() == handle:
            return True
        if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == me.id:
            return True
    return False


_ADDRESSED_COMMAND = re.compile(r"/[A-Za-z0-9_]+@([A-Za-z0-9_]+)(?:\s|$)")


def _for_another_bot(text: str, username: str) -> bool:
    addressed = _ADDRESSED_COMMAND.match(text)
    return addressed is not None and addressed.group(1).lower() != username.lower()


def _strip_mention(text: str, username: str) -> str:
    stripped = re.sub(rf"@{re.escape(username)}\b[,:]?", "", text, flags=re.IGNORECASE)
    stripped = re.sub(r"[ \t]{2,}", " ", stripped).strip()
    return stripped or text


def _attachments(message: Message) -> tuple[Attachment, ...]:
    parts: list[Attachment] = []
    if message.photo:
        photo = message.photo[-1]  # Telegram lists the sizes smallest first
        parts.append(
            Attachment(
                "image",
                photo.file_id,
                name=f"photo-{photo.file_unique_id}.jpg",
                mime="image/jpeg",
                size=photo.file_size,
                meta={"width": photo.width, "height": photo.height},
            )
        )
    if message.document is not None:
        doc = message.document
        parts.append(
            Attachment(
                "document",
                doc.file_id,
                name=doc.file_name or "",
                mime=doc.mime_type or "",
                size=doc.file_size,
            )
        )
    if message.voice is not None:
        voice = message.voice
        parts.append(
            Attachment(
                "voice",
                voice.file_id,
                name=f"voice-{voice.file_unique_id}.ogg",
                mime=voice.mime_type or "audio/ogg",
                size=voice.file_size,
            )
        )
    for kind, media in (("audio", message.audio), ("video", message.video)):
        if media is not None:
            parts.append(
                Attachment(
                    kind,
                    media.file_id,
                    name=media.file_name or "",
                    mime=media.mime_type or "",
                    size=media.file_size,
                )
            )
    return tuple(parts)
