"""Native buttons: which command a press runs, whose press counts, and until when.

A message's choices get one short random token each (Telegram's callback_data holds at most
64 bytes; Slack's action_id and Discord's custom_id carry it too). The book keeps, per
message: the conversation, the shown text, who may press (`OutboundMessage.choices_for`),
until when, and the tokens' commands. It is a small JSON file beside the other channel state,
replaced atomically on every change, so a press after a restart still resolves.

A message's buttons answer once: the first press that is taken uses up all of them, so a
double tap (or a second person racing the first) runs the command once. The same press
delivered again (a platform's retry) is let through again; the gateway's inbox drops it by
its delivery id. A press whose hand-over failed gives the buttons back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from channels import InboundSink

from bot.messages import (
    Command,
    Conversation,
    ConversationKind,
    Identity,
    InboundMessage,
    OutboundMessage,
)

log = logging.getLogger("decapod.channels")

#: how long buttons answer when the message does not say (`OutboundMessage.choices_until`)
DEFAULT_TTL_S = 24 * 3600.0
#: messages with live buttons kept at most; the oldest go first
MAX_MESSAGES = 2000
NOT_YOURS = "These buttons are not for you."
EXPIRED = "These buttons have expired or were already used."


@dataclass(frozen=True, slots=True)
class Button:
    token: str
    label: str


@dataclass(frozen=True, slots=True)
class Press:
    """A tap on a button, as the platform reported it."""

    id: str  # the platform's id of this press: the delivery id of the command it runs
    token: str
    identity: Identity


@dataclass(frozen=True, slots=True)
class Pressed:
    """A press that was taken: the command to run, and what the message shows now."""

    command: str
    label: str
    conversation: Conversation
    shown: str  # the message's text with the decision under it, buttons gone


@dataclass(frozen=True, slots=True)
class Refused:
    """A press that changes nothing; `reason` is shown to the presser only."""

    reason: str


@dataclass(slots=True)
class _Entry:
    conversation: dict[str, str | None]
    text: str
    until: float
    allowed: list[str]  # identity keys; empty: anyone the access layer lets in
    choices: list[tuple[str, str, str]]  # (token, label, command)
    used_by: str | None = None  # the press that used the buttons up


class ButtonBook:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, _Entry] = {}  # message key -> entry
        self._by_token: dict[str, str] = {}  # token -> message key
        self._lock = asyncio.Lock()
        self._loaded = False

    def _load(self) -> None:
        self._loaded = True
        if self.path is None:
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            for key, data in raw.items():
                data["choices"] = [tuple(c) for c in data["choices"]]
                self._add(key, _Entry(**data))
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError) as exc:
            # losing this only turns presses on old messages into "expired"
            log.warning("ignoring the unreadable button list %s: %s", self.path, exc)

    def _add(self, key: str, entry: _Entry) -> None:
        self._entries[key] = entry
        for token, _label, _command in entry.choices:
            self._by_token[token] = key

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            for token, _label, _command in entry.choices:
                self._by_token.pop(token, None)

    async def issue(self, message: OutboundMessage, text: str) -> list[Button]:
        """Tokens for `message`'s choices, recorded before the message is sent."""
        async with self._lock:
            if not self._loaded:
                await asyncio.to_thread(self._load)
            now = time.time()
            for key in [k for k, e in self._entries.items() if e.until < now]:
                self._drop(key)
            while len(self._entries) >= MAX_MESSAGES:
                self._drop(next(iter(self._entries)))
            until = message.choices_until or now + DEFAULT_TTL_S
            buttons = [Button(secrets.token_urlsafe(9), c.label) for c in message.choices]
            conversation = asdict(message.conversation)
            conversation["kind"] = message.conversation.kind.value
            entry = _Entry(
                conversation,
                text,
                until,
                list(message.choices_for),
                [
                    (b.token, c.label, c.command)
                    for b, c in zip(buttons, message.choices, strict=True)
                ],
            )
            self._add(buttons[0].token, entry)
            await self._save()
            return buttons

    async def claim(self, press: Press) -> Pressed | Refused:
        """Take a press, or say why it changes nothing. A taken press uses the buttons up."""
        async with self._lock:
            if not self._loaded:
                await asyncio.to_thread(self._load)
            key = self._by_token.get(press.token)
            entry = self._entries.get(key) if key is not None else None
            if entry is None:
                return Refused(EXPIRED)
            if entry.allowed and press.identity.key not in entry.allowed:
                return Refused(NOT_YOURS)
            if entry.used_by not in (None, press.id) or entry.until < time.time():
                return Refused(EXPIRED)
            entry.used_by = press.id
            await self._save()
            label, command = next((lb, cmd) for t, lb, cmd in entry.choices if t == press.token)
            who = press.identity.display_name or press.identity.user_id
            return Pressed(
                command, label, _conversation(entry), f"{entry.text}\n\n→ {label} ({who})"
            )

    async def release(self, press: Press) -> None:
        """The press could not be handed on: its buttons answer again."""
        async with self._lock:
            key = self._by_token.get(press.token)
            entry = self._entries.get(key) if key is not None else None
            if entry is not None and entry.used_by == press.id:
                entry.used_by = None
                await self._save()

    async def _save(self) -> None:
        if self.path is None:
            return
        data = {key: asdict(entry) for key, entry in self._entries.items()}
        await asyncio.to_thread(_write, self.path, data)


def choices_as_text(message: OutboundMessage) -> str:
    """Buttons as lines a person can type, for platforms (and consoles) without buttons."""
    if not message.choices:
        return message.text
    lines = [f"{choice.label}: {choice.command}" for choice in message.choices]
    return message.text + "\n" + "\n".join(lines)


async def hand_on(
    book: ButtonBook, sink: InboundSink | None, press: Press, meta: dict[str, Any]
) -> Pressed | Refused:
    """A press stored through the sink as the presser's own command, like a typed one:
    access, roles, dedupe (the press id is the delivery id) and the session queue apply.
    A press the sink could not take gives the buttons back, and raises."""
    claim = await book.claim(press)
    if isinstance(claim, Refused):
        return claim
    if sink is None:
        await book.release(press)
        return Refused("Not running; please try again in a moment.")
    message = InboundMessage(
        id=f"press:{press.id}",
        identity=press.identity,
        conversation=claim.conversation,
        text=claim.command,
        command=Command.parse(claim.command),
        mentioned=True,
        meta=meta,
    )
    try:
        await sink(message)
    except BaseException:
        await book.release(press)
        raise
    return claim


def _conversation(entry: _Entry) -> Conversation:
    c = entry.conversation
    return Conversation(
        str(c["channel"]), str(c["chat_id"]), ConversationKind(str(c["kind"])), c.get("thread_id")
    )


def _write(path: Path, data: object) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot save the button list %s: %s", path, exc)
        with contextlib.suppress(OSError):
            path.with_name(path.name + ".tmp").unlink()
