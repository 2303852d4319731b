"""The common message model every channel normalizes into.

Adapters build these at their edge; nothing past an adapter sees a platform SDK type.
All types are frozen and JSON round-trippable (`to_dict` / `from_dict`), because inbound
deliveries are persisted before they are handled (see bot/gateway.py).
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any, NewType, Protocol

SessionKey = NewType("SessionKey", str)


class ConversationKind(StrEnum):
    DM = "dm"
    GROUP = "group"
    CHANNEL = "channel"


@dataclass(frozen=True, slots=True)
class Identity:
    """One account on one platform. `key` ("telegram:123456") is the canonical id."""

    channel: str
    user_id: str
    display_name: str = ""
    is_bot: bool = False

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.user_id}"

    def well_formed(self) -> Identity:
        """This identity with `well_formed` applied to the name its client sent."""
        if not _LONE_SURROGATE.search(self.display_name):
            return self
        return replace(self, display_name=well_formed(self.display_name))


#: the start of a group's place, `<channel>:<group|channel>:` (the channel holds no ':' or
#: '@'), as a pattern: memory owners are read back with it too (bot/store/memory_items.py)
GROUP_PLACE_PREFIX = r"[^:@]+:(?:group|channel):"
#: where a group's place begins in a memory owner: "telegram:1@tg:group:-5" holds what
#: telegram:1 saved in that group. No person id may hold it.
GROUP_PLACE_START = re.compile("@" + GROUP_PLACE_PREFIX)


def person_id_problem(key: str) -> str | None:
    """Why the identity `key` cannot become a person id, or None. One holding
    `@<channel>:group:` (or `:channel:`) would read as another person's items in a group.
    The platforms' user ids (numbers, Slack's `U...`) never hold '@'; a console name may."""
    if GROUP_PLACE_START.search(key) is None:
        return None
    return (
        f"the id {key!r} holds @<channel>:group: (or :channel:), which marks a group in the "
        "memory's owners; choose another user name"
    )


def identity_from_key(key: str) -> Identity:
    channel, _, user_id = key.partition(":")
    return Identity(channel, user_id)


@dataclass(frozen=True, slots=True)
class Conversation:
    """Where a message was said. `channel` is the configured channel name, not the platform."""

    channel: str
    chat_id: str
    kind: ConversationKind = ConversationKind.DM
    thread_id: str | None = None

    @property
    def session_key(self) -> SessionKey:
        # DMs are keyed by their own chat, which every platform makes per person.
        key = f"{self.channel}:{self.kind.value}:{self.chat_id}"
        if self.thread_id:
            key += f":thread:{self.thread_id}"
        return SessionKey(key)


def cron_session_key(job_id: str) -> SessionKey:
    return SessionKey(f"cron:{job_id}")


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file that came with a message. Bytes are fetched on demand through the channel."""

    kind: str  # image | document | audio | voice | video | other
    ref: str  # the platform's file id or URL
    name: str = ""
    mime: str = ""
    size: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def well_formed(text: str) -> str:
    """`text` with each lone UTF-16 surrogate replaced by U+FFFD. A client that cut an emoji
    in half sends one as a JSON escape (`\\ud83d`), which JSON parsers accept but neither
    the store nor a provider can encode."""
    return _LONE_SURROGATE.sub("\ufffd", text) if _LONE_SURROGATE.search(text) else text


def size_text(size: int) -> str:
    """A file size as a person reads it: "900 bytes", "49 KB", "2.9 MB"."""
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB" if size >= 1024 else f"{size} bytes"
    return f"{size / 1024 / 1024:.1f} MB"


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed slash command: `/remind in 10m stretch` -> Command("remind", "in 10m stretch")."""

    name: str
    args: str = ""
    #: a name that is no command makes the message chat, not "Unknown command": for a
    #: platform where a typed "/word" is rarely meant as one (Slack's composer takes them)
    chat_if_unknown: bool = False

    @classmethod
    def parse(cls, text: str, bot_username: str | None = None) -> Command | None:
        if not text.startswith("/") or len(text) < 2 or text[1].isspace():
            return None
        # any whitespace ends the name: phones send "/remind\nin 5 minutes stretch"
        head, *tail = text[1:].split(None, 1)
        rest = tail[0] if tail else ""
        name, _, target = head.partition("@")
        if target and bot_username and target.lower() != bot_username.lower():
            return None  # addressed to another bot in a group
        if not name or not all(c.isalnum() or c == "_" for c in name):
            return None
        return cls(name.lower(), rest.strip())


def _command_dict(command: Command) -> dict[str, Any]:
    # `chat_if_unknown` only when set: a replica of the version before, during a rolling
    # upgrade, makes a Command of this dict and knows no such field
    stored: dict[str, Any] = {"name": command.name, "args": command.args}
    if command.chat_if_unknown:
        stored["chat_if_unknown"] = True
    return stored


def _command_of(stored: dict[str, Any]) -> Command:
    # field by field: a key a newer version added is left out, not a TypeError
    return Command(
        stored["name"], stored.get("args", ""), bool(stored.get("chat_if_unknown", False))
    )


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message from a person. `id` is the platform's delivery id, unique per channel."""

    id: str
    identity: Identity
    conversation: Conversation
    text: str = ""
    parts: tuple[Attachment, ...] = ()
    command: Command | None = None
    mentioned: bool = False
    reply_to: str | None = None
    platform_message_id: str | None = None
    received_at: float = field(default_factory=time.time)
    #: adapter-specific routing data the reply path needs (e.g. a Slack response_url)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def session_key(self) -> SessionKey:
        return self.conversation.session_key

    def to_dict(self) -> dict[str, Any]:
        """What `asdict` gives (a test keeps them equal), built by hand: asdict's recursive
        walk and deep copies cost ~25 us on every stored message."""
        who, where, command = self.identity, self.conversation, self.command
        return {
            "id": self.id,
            "identity": {
                "channel": who.channel,
                "user_id": who.user_id,
                "display_name": who.display_name,
                "is_bot": who.is_bot,
            },
            "conversation": {
                "channel": where.channel,
                "chat_id": where.chat_id,
                "kind": where.kind,
                "thread_id": where.thread_id,
            },
            "text": self.text,
            "parts": tuple(asdict(p) for p in self.parts),
            "command": None if command is None else _command_dict(command),
            "mentioned": self.mentioned,
            "reply_to": self.reply_to,
            "platform_message_id": self.platform_message_id,
            "received_at": self.received_at,
            "meta": copy.deepcopy(self.meta) if self.meta else {},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InboundMessage:
        conv = dict(data["conversation"])
        conv["kind"] = ConversationKind(conv["kind"])
        command = data.get("command")
        return cls(
            id=data["id"],
            identity=Identity(**data["identity"]),
            conversation=Conversation(**conv),
            text=data.get("text", ""),
            parts=tuple(Attachment(**p) for p in data.get("parts", ())),
            command=_command_of(command) if command else None,
            mentioned=data.get("mentioned", False),
            reply_to=data.get("reply_to"),
            platform_message_id=data.get("platform_message_id"),
            received_at=data.get("received_at", time.time()),
            meta=data.get("meta", {}),
        )

    def well_formed(self) -> InboundMessage:
        """This message with `well_formed` applied to all a person or their client wrote: the
        text, a command's arguments, the sender's name and the files' names (each is stored,
        and the names reach the model too)."""
        changes: dict[str, Any] = {}
        if _LONE_SURROGATE.search(self.text):
            changes["text"] = well_formed(self.text)
        command = self.command
        if command is not None and _LONE_SURROGATE.search(command.args):
            changes["command"] = replace(command, args=well_formed(command.args))
        identity = self.identity.well_formed()
        if identity is not self.identity:
            changes["identity"] = identity
        if any(_LONE_SURROGATE.search(p.name + p.mime) for p in self.parts):
            changes["parts"] = tuple(
                replace(p, name=well_formed(p.name), mime=well_formed(p.mime)) for p in self.parts
            )
        return replace(self, **changes) if changes else self


@dataclass(frozen=True, slots=True)
class Choice:
    """A button under a message. Pressing it runs `command` as the person who pressed it,
    through the same access and role checks as typing it; platforms without buttons show
    the command as text instead."""

    label: str
    command: str  # "/approve a1b2c3"


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    conversation: Conversation
    text: str
    parts: tuple[Attachment, ...] = ()
    choices: tuple[Choice, ...] = ()
    #: identity keys whose presses count (the person asked, the owners); empty: anyone in
    #: the conversation. A press by someone else is answered "not yours" and changes nothing.
    choices_for: tuple[str, ...] = ()
    #: epoch seconds after which a press is answered "expired" (None: the channel's default)
    choices_until: float | None = None
    reply_to: str | None = None
    #: link previews are an exfiltration path; off unless a caller says otherwise
    link_preview: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SentRef:
    """What a channel returns for a sent message, so it can be edited later."""

    conversation: Conversation
    message_id: str
    meta: dict[str, Any] = field(default_factory=dict)


class FileChannel(Protocol):
    """The part of a channel that sends files: the `send_file` tool and voice answers use
    it, and channels.Channel includes it."""

    @property
    def max_upload_bytes(self) -> int:
        """The largest file `send_file` takes."""
        ...

    @property
    def sends_voice_notes(self) -> bool:
        """Voice answers go as voice messages (OGG/Opus) rather than as an audio file (MP3)."""
        ...

    async def send_file(
        self,
        conversation: Conversation,
        data: bytes,
        name: str,
        mime: str,
        *,
        kind: str = "document",
        caption: str = "",
    ) -> SentRef:
        """Send a file to a chat: `kind` is "photo", "voice", "audio" or "document".
        DeliveryRefused when the platform (or this adapter) cannot take it."""
        ...
