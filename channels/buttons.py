"""Native buttons: which command a press runs, whose press counts, and until when.

A message's choices get one short random token each (Telegram's callback_data holds at most
64 bytes; Slack's action_id and Discord's custom_id carry it too). The book keeps, per
message: the conversation, the shown text, who may press (`OutboundMessage.choices_for`),
until when, and the tokens' commands. It keeps them in the store (bot/channel_state.py, given
by the gateway before the channel starts), so a press after a restart still resolves, and a
press that reaches another replica than the one that sent the message too. A book without
the store (a channel used on its own) keeps them in memory.

A message's buttons answer once: the first press that is taken uses up all of them, so a
double tap (or a second person racing the first, on any replica) runs the command once. The
same press delivered again (a platform's retry) is let through again; the gateway's inbox
drops it by its delivery id. A press whose hand-over failed gives the buttons back.

An earlier version kept them in a JSON file per channel in the home: that file is imported
into the store once, then renamed `*.imported` and never written again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from channels import InboundSink

from bot.channel_state import ButtonChoice, ButtonMessage, ButtonState
from bot.messages import (
    Command,
    Conversation,
    ConversationKind,
    Identity,
    InboundMessage,
    OutboundMessage,
    well_formed,
)
from channels.chunks import Chunk, split_text

log = logging.getLogger("decapod.channels")

#: how long buttons answer when the message does not say (`OutboundMessage.choices_until`)
DEFAULT_TTL_S = 24 * 3600.0
#: messages with live buttons a book without the store keeps at most; the oldest go first
MAX_MESSAGES = 2000
NOT_YOURS = "These buttons are not for you."
EXPIRED = "These buttons have expired or were already used."
#: the least of a question a decided message keeps when it must be cut for the decision
_MIN_SHOWN = 200


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
    #: the line under the text that says who chose what
    decision: str = ""

    def fitted(self, split: Callable[[str], list[Chunk]]) -> str:
        """`shown` as one message of a platform that cuts text with `split`. A question that
        used the whole of one message has no room for the decision: its text is cut short
        (at a line or a word, a code block closed) so the decision still shows; else the
        edit was refused as too long and the spent buttons stayed under the question."""
        if len(split(self.shown)) <= 1:
            return self.shown
        tail = f"\n…\n\n{self.decision}"
        text = self.shown.removesuffix(f"\n\n{self.decision}")
        head = split(text)[0].text
        while len(head) > _MIN_SHOWN and len(split(head + tail)) > 1:
            head = split_text(head, max(len(head) - len(tail), _MIN_SHOWN))[0].text
        return head + tail


@dataclass(frozen=True, slots=True)
class Refused:
    """A press that changes nothing; `reason` is shown to the presser only."""

    reason: str


class ButtonBook:
    def __init__(self, path: Path | None) -> None:
        #: the JSON file an earlier version kept, imported into the store once
        self.path = path
        self.channel = ""
        self._state: ButtonState = MemoryButtons()
        self._opened: asyncio.Task[None] | None = None

    def use(self, state: ButtonState, channel: str) -> None:
        """Keep the buttons in `state` (the store), under the channel's name."""
        self._state, self.channel, self._opened = state, channel, None

    async def _open(self) -> None:
        opening = self._opened
        if opening is None:
            opening = self._opened = asyncio.ensure_future(self._import_old_file())
        try:
            await asyncio.shield(opening)
        except Exception:
            if self._opened is opening:
                self._opened = None  # the store failed: the next press tries the import again
            raise

    async def _import_old_file(self) -> None:
        if self.path is None or isinstance(self._state, MemoryButtons):
            return
        messages = await asyncio.to_thread(_read_old_file, self.path)
        if messages is None:
            return
        await self._state.put_buttons(self.channel, messages)
        await asyncio.to_thread(_retire, self.path)
        log.info("imported %d messages' buttons from %s", len(messages), self.path)

    async def issue(self, message: OutboundMessage, text: str) -> list[Button]:
        """Tokens for `message`'s choices, recorded before the message is sent."""
        await self._open()
        until = message.choices_until or time.time() + DEFAULT_TTL_S
        buttons = [Button(secrets.token_urlsafe(9), c.label) for c in message.choices]
        entry = ButtonMessage(
            key=buttons[0].token,
            conversation=message.conversation,
            text=text,
            expires_at=until,
            allowed=tuple(message.choices_for),
            choices=tuple(
                ButtonChoice(b.token, c.label, c.command)
                for b, c in zip(buttons, message.choices, strict=True)
            ),
        )
        await self._state.put_buttons(self.channel, [entry])
        return buttons

    async def claim(self, press: Press) -> Pressed | Refused:
        """Take a press, or say why it changes nothing. A taken press uses the buttons up."""
        await self._open()
        entry = await self._state.find_buttons(self.channel, press.token)
        if entry is None:
            return Refused(EXPIRED)
        if entry.allowed and press.identity.key not in entry.allowed:
            return Refused(NOT_YOURS)
        if not await self._state.use_buttons(self.channel, entry.key, press.id, time.time()):
            return Refused(EXPIRED)
        choice = next(c for c in entry.choices if c.token == press.token)
        who = press.identity.display_name or press.identity.user_id
        decision = f"→ {choice.label} ({who})"
        return Pressed(
            choice.command,
            choice.label,
            entry.conversation,
            f"{entry.text}\n\n{decision}",
            decision,
        )

    async def release(self, press: Press) -> None:
        """The press could not be handed on: its buttons answer again."""
        entry = await self._state.find_buttons(self.channel, press.token)
        if entry is not None:
            await self._state.give_back_buttons(self.channel, entry.key, press.id)


class MemoryButtons:
    """The buttons of a book without the store: this process's memory, bounded."""

    def __init__(self) -> None:
        self._entries: dict[str, ButtonMessage] = {}  # message key -> entry
        self._by_token: dict[str, str] = {}  # token -> message key

    async def put_buttons(self, channel: str, messages: list[ButtonMessage]) -> None:
        now = time.time()
        for key in [k for k, e in self._entries.items() if e.expires_at < now]:
            self._drop(key)
        for entry in messages:
            while len(self._entries) >= MAX_MESSAGES:
                self._drop(next(iter(self._entries)))
            self._entries[entry.key] = entry
            for choice in entry.choices:
                self._by_token[choice.token] = entry.key

    async def find_buttons(self, channel: str, token: str) -> ButtonMessage | None:
        key = self._by_token.get(token)
        return self._entries.get(key) if key is not None else None

    async def use_buttons(self, channel: str, key: str, press_id: str, now: float) -> bool:
        entry = self._entries.get(key)
        if entry is None or entry.used_by not in (None, press_id) or entry.expires_at < now:
            return False
        self._entries[key] = dataclasses.replace(entry, used_by=press_id)
        return True

    async def give_back_buttons(self, channel: str, key: str, press_id: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.used_by == press_id:
            self._entries[key] = dataclasses.replace(entry, used_by=None)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        for choice in entry.choices if entry is not None else ():
            self._by_token.pop(choice.token, None)


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
    # cleaned before anything keeps or shows it: the presser's name goes into the edited
    # message and the store, neither of which can encode half an emoji
    press = dataclasses.replace(
        press, identity=press.identity.well_formed(), token=well_formed(press.token)
    )
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


def _read_old_file(path: Path) -> list[ButtonMessage] | None:
    """The buttons an earlier version kept in `path`; None when there is no such file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return [_old_entry(key, data) for key, data in raw.items()]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        # losing this only turns presses on old messages into "expired"
        log.warning("ignoring the unreadable button list %s: %s", path, exc)
        return None


def _old_entry(key: str, data: dict[str, Any]) -> ButtonMessage:
    c = data["conversation"]
    kind = ConversationKind(str(c["kind"]))
    return ButtonMessage(
        key=str(key),
        conversation=Conversation(str(c["channel"]), str(c["chat_id"]), kind, c.get("thread_id")),
        text=str(data["text"]),
        expires_at=float(data["until"]),
        allowed=tuple(str(a) for a in data["allowed"]),
        choices=tuple(ButtonChoice(str(t), str(lb), str(cmd)) for t, lb, cmd in data["choices"]),
        used_by=data.get("used_by"),
    )


def _retire(path: Path) -> None:
    """An imported file is renamed, so it is read once and never written again."""
    try:
        path.replace(path.with_name(path.name + ".imported"))
    except OSError as exc:
        log.warning("cannot rename the imported file %s: %s", path, exc)
