"""Real-shaped updates -> InboundMessage: conversations, mentions, commands, files, and what is
dropped on purpose. No network: the payload files go through PTB's parser and our normalizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot, Update

from bot.messages import ConversationKind, InboundMessage
from channels.telegram_inbound import BotIdentity, ChatMigrations, normalize
from tests.channels.telegram.conftest import GROUP, payload
from tests.fakes.telegram import BOT_ID, TOKEN, USERNAME

ME = BotIdentity(BOT_ID, USERNAME)


def _normalize(name: str, migrations: ChatMigrations) -> InboundMessage | None:
    return normalize(Update.de_json(payload(name), Bot(TOKEN)), "tg", ME, migrations)


@pytest.fixture
def migrations(tmp_path: Path) -> ChatMigrations:
    return ChatMigrations(tmp_path / "telegram-tg-chats.json")


def test_private_message_is_a_dm_per_person(migrations: ChatMigrations) -> None:
    message = _normalize("private_text", migrations)
    assert message is not None
    assert message.id == "900001"  # the update_id: the gateway dedupes on it
    assert message.conversation.kind is ConversationKind.DM
    assert message.conversation.chat_id == "42" and message.identity.user_id == "42"
    assert message.identity.display_name == "Alice Liddell" and not message.identity.is_bot
    assert message.session_key == "tg:dm:42"
    assert message.text == "Hello there" and message.platform_message_id == "101"
    command = _normalize("private_command", migrations)
    assert command is not None and command.command is not None
    assert (command.command.name, command.command.args) == ("remind", "in 10m stretch")


@pytest.mark.parametrize(
    ("name", "mentioned", "text", "command"),
    [
        ("group_mention", True, "what is 2+2?", None),
        ("group_plain", False, "just chatting among ourselves", None),
        ("group_reply_to_bot", True, "and what about 3+3?", None),
        ("group_text_mention", True, "Decapod, summarize this", None),
        ("group_command_for_us", False, "/help@decapod_test_bot", "help"),
    ],
)
def test_group_messages_say_whether_the_bot_was_addressed(
    migrations: ChatMigrations, name: str, mentioned: bool, text: str, command: str | None
) -> None:
    message = _normalize(name, migrations)
    assert message is not None
    assert message.conversation.kind is ConversationKind.GROUP
    assert message.conversation.chat_id == str(GROUP) and message.conversation.thread_id is None
    assert message.mentioned is mentioned
    assert message.text == text
    assert (message.command.name if message.command else None) == command


def test_a_reply_points_at_the_replied_message(migrations: ChatMigrations) -> None:
    message = _normalize("group_reply_to_bot", migrations)
    assert message is not None and message.reply_to == "150"


def test_forum_topic_is_a_thread_and_general_is_the_group(migrations: ChatMigrations) -> None:
    topic = _normalize("forum_topic", migrations)
    general = _normalize("forum_general", migrations)
    assert topic is not None and general is not None
    assert topic.conversation.thread_id == "77"
    assert topic.session_key == "tg:group:-1009876543210:thread:77"
    # the topic's root service message is not a reply
    assert topic.reply_to is None and topic.mentioned
    assert general.conversation.thread_id is None
    assert general.session_key == "tg:group:-1009876543210"


def test_photo_document_and_voice_become_parts(migrations: ChatMigrations) -> None:
    photo = _normalize("photo", migrations)
    assert photo is not None and photo.text == "what is this?"
    (image,) = photo.parts
    assert (image.kind, image.ref, image.size, image.mime) == (
        "image",
        "AgACAgQAAxkBAAPHZlarge",  # the largest size
        58214,
        "image/jpeg",
    )
    assert image.meta == {"width": 1280, "height": 960}
    document = _normalize("document", migrations)
    assert document is not None
    (doc,) = document.parts
    assert (doc.kind, doc.name, doc.mime, doc.size) == (
        "document",
        "report.pdf",
        "application/pdf",
        183920,
    )
    voice = _normalize("voice", migrations)
    assert voice is not None
    (note,) = voice.parts
    assert (note.kind, note.mime, note.size) == ("voice", "audio/ogg", 10944)
    # the message survives storage: parts round-trip through JSON
    assert InboundMessage.from_dict(json.loads(json.dumps(voice.to_dict()))) == voice


@pytest.mark.parametrize(
    "name",
    [
        "edited_message",
        "channel_post",
        "new_members",
        "sticker",
        "migrate_to",
        "group_command_other_bot",
    ],
)
def test_dropped_on_purpose(migrations: ChatMigrations, name: str) -> None:
    assert _normalize(name, migrations) is None


@pytest.mark.parametrize("name", ["bot_sender", "anonymous_admin"])
def test_bots_and_chats_as_senders_are_marked_so_access_can_drop_them(
    migrations: ChatMigrations, name: str
) -> None:
    message = _normalize(name, migrations)
    assert message is not None and message.identity.is_bot


def test_group_migration_keeps_the_original_chat(tmp_path: Path) -> None:
    migrations = ChatMigrations(None)
    assert _normalize("migrate_to", migrations) is None
    assert _normalize("migrate_from", migrations) is None  # both sides may arrive
    later: dict[str, Any] = payload("group_plain")
    later["message"]["chat"] = {"id": -1004000001, "title": "Old group", "type": "supergroup"}
    message = normalize(Update.de_json(later, Bot(TOKEN)), "tg", ME, migrations)
    assert message is not None and message.conversation.chat_id == "-4000001"
    assert migrations.current(-4000001) == -1004000001
    assert migrations.original(-1004000001) == -4000001


@pytest.mark.parametrize("index", range(5))
def test_malformed_payloads_raise_for_the_caller_to_skip(
    migrations: ChatMigrations, index: int
) -> None:
    raw = payload("malformed")[index]
    with pytest.raises((TypeError, ValueError, AttributeError, KeyError)):
        normalize(Update.de_json(raw, Bot(TOKEN)), "tg", ME, migrations)
