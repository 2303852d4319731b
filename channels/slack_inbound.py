"""Slack events and slash commands -> InboundMessage, and the small state that needs.

Pure functions plus two bounded structures: `ThreadMemory` (threads the bot posted in, so
replies there count as addressed to it) and `RecentDeliveries` (so one message that Slack
delivers twice, as `message` and `app_mention` or as a retry, is handed on once).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.channel_state import ThreadState
from bot.commands import CommandSpec
from bot.messages import (
    Attachment,
    Command,
    Conversation,
    ConversationKind,
    Identity,
    InboundMessage,
)
from channels.slack_mrkdwn import escape, from_slack

log = logging.getLogger("decapod.channels.slack")

#: message subtypes that carry something a person said; every other subtype (edits,
#: deletions, joins, topic changes, ...) is skipped on purpose (docs/channels/slack.md)
SPOKEN_SUBTYPES = frozenset({"file_share", "thread_broadcast", "me_message", "bot_message"})


@dataclass(frozen=True, slots=True)
class Normalizer:
    channel: str  # the configured channel name
    bot_user_id: str
    threads: ThreadMemory
    slash_command: str = "/decapod"  # the configured one, as typed: "/decapod"

    def event(
        self, body: dict[str, Any], commands: Sequence[CommandSpec] = ()
    ) -> tuple[InboundMessage, list[str]] | None:
        """An event callback -> (message, dedupe keys), or None when it is not for the model.
        `commands` is the gateway's table: only its names are read as commands."""
        event = body.get("event")
        event_id = body.get("event_id")
        if not isinstance(event, dict) or not isinstance(event_id, str):
            log.warning("slack: skipped an event callback without event or event_id")
            return None
        kind = event.get("type")
        subtype = event.get("subtype")
        if kind not in ("message", "app_mention") or event.get("hidden"):
            log.debug("slack: skipped %s/%s", kind, subtype)
            return None
        if subtype is not None and subtype not in SPOKEN_SUBTYPES:
            log.debug("slack: skipped message subtype %s", subtype)
            return None
        chat_id, ts = event.get("channel"), event.get("ts")
        sender = event.get("user") or event.get("bot_id")
        raw_text = event.get("text") or ""
        if not (
            isinstance(chat_id, str)
            and isinstance(ts, str)
            and isinstance(sender, str)
            and isinstance(raw_text, str)
        ):
            log.warning("slack: skipped %s %s without channel, ts, sender or text", kind, event_id)
            return None
        thread_ts = event.get("thread_ts")
        thread_ts = thread_ts if isinstance(thread_ts, str) else None
        conversation, meta = self._place(chat_id, event.get("channel_type") == "im", ts, thread_ts)
        mentioned = (
            kind == "app_mention"
            or (bool(self.bot_user_id) and f"<@{self.bot_user_id}" in raw_text)
            or (thread_ts is not None and (chat_id, thread_ts) in self.threads)
        )
        files = event.get("files")
        parts = self._files(files if isinstance(files, list) else [])
        text = from_slack(raw_text, self.bot_user_id).strip()
        message_key = f"ts:{chat_id}:{ts}"
        message = InboundMessage(
            # Keyed by the message, not the event: Slack sends one channel mention as two
            # events (`message`, `app_mention`) with their own event_ids, and the inbox must
            # see them as one even when they reach two replicas or the two sides of a restart.
            id=message_key,
            identity=Identity(
                self.channel,
                sender,
                _display_name(event),
                is_bot=subtype == "bot_message" or "bot_id" in event,
            ),
            conversation=conversation,
            text=text,
            parts=parts,
            command=self.typed_command(text, [spec.name for spec in commands]),
            mentioned=mentioned,
            reply_to=thread_ts if thread_ts != ts else None,
            platform_message_id=ts,
            meta=meta,
        )
        keys = [f"event:{event_id}", message_key]
        if isinstance(event.get("client_msg_id"), str):
            keys.append(f"client:{event['client_msg_id']}")
        return message, keys

    def typed_command(self, text: str, names: Sequence[str]) -> Command | None:
        """A command typed as text (a shared file's comment: Slack's composer takes a leading
        "/" for its own slash commands). `/decapod ask ...` reads as the slash command does;
        `/remind ...` as on the other platforms. A "/word" that is no command is chat: the
        composer answers a mistyped slash command itself, so "/tmp is full" here is text.
        `names` are the subcommands offered to the channel, as the slash command has them (a
        command that joins in the warm-up is a question until then, docs/channels/slack.md)."""
        head, *tail = text.split(None, 1) or [""]
        if head.lower() == self.slash_command.lower():
            split = split_subcommand(tail[0] if tail else "", names)
            return Command(*split) if split is not None else Command("help", "")
        command = Command.parse(text)
        # the gateway decides against its whole table (more commands join in its warm-up)
        return None if command is None else Command(command.name, command.args, True)

    def _place(
        self, chat_id: str, direct: bool, ts: str, thread_ts: str | None
    ) -> tuple[Conversation, dict[str, Any]]:
        if direct:
            # one session per DM; a reply still goes into the thread it was asked in
            meta = {"thread_ts": thread_ts} if thread_ts else {}
            return Conversation(self.channel, chat_id, ConversationKind.DM), meta
        # Channels, private channels and group DMs alike: app_mention events carry no
        # channel_type, and one message must land in one session whichever event brings it.
        # Every thread is its own session; a top-level message starts one.
        kind = ConversationKind.CHANNEL
        return Conversation(self.channel, chat_id, kind, thread_ts or ts), {}

    def _files(self, files: Sequence[Any]) -> tuple[Attachment, ...]:
        """Every file, even one too large or without a link: the download refuses it and the
        person is told in one line, instead of the file silently going missing."""
        parts: list[Attachment] = []
        for item in files:
            if not isinstance(item, dict):
                continue
            name = str(item.get("name") or item.get("title") or "file")
            url = item.get("url_private_download") or item.get("url_private")
            size = item.get("size") if isinstance(item.get("size"), int) else None
            mime = str(item.get("mimetype") or "")
            parts.append(
                Attachment(
                    _file_kind(item, mime),
                    url if isinstance(url, str) else "",
                    name,
                    mime,
                    size,
                    {"file_id": item.get("id", "")},
                )
            )
        return tuple(parts)

    def slash(self, body: dict[str, Any], name: str, args: str) -> InboundMessage | None:
        """A slash command already split into (subcommand, args)."""
        trigger, user = body.get("trigger_id"), body.get("user_id")
        chat_id, response_url = body.get("channel_id"), body.get("response_url")
        if not all(isinstance(v, str) and v for v in (trigger, user, chat_id, response_url)):
            log.warning("slack: skipped a slash command without trigger, user, channel or url")
            return None
        assert isinstance(chat_id, str) and isinstance(user, str)
        direct = chat_id.startswith("D") or body.get("channel_name") == "directmessage"
        kind = ConversationKind.DM if direct else ConversationKind.CHANNEL
        return InboundMessage(
            id=f"slash:{trigger}",
            identity=Identity(self.channel, user, str(body.get("user_name") or "")),
            conversation=Conversation(self.channel, chat_id, kind),
            text=f"/{name} {args}".strip(),
            command=Command(name, args),
            mentioned=True,
            meta={"response_url": response_url},
        )


def _display_name(event: dict[str, Any]) -> str:
    profile = event.get("user_profile")
    if isinstance(profile, dict):
        for key in ("display_name", "real_name", "name"):
            if profile.get(key):
                return str(profile[key])
    return str(event.get("username") or "")


def _file_kind(item: dict[str, Any], mime: str) -> str:
    # A clip recorded in the Slack client is a voice note: its file has subtype slack_audio
    # (mimetype audio/webm or audio/mp4, at times video/mp4). An uploaded audio file has no
    # subtype, although it shares media_display_type "audio" and the player.
    if item.get("subtype") == "slack_audio":
        return "voice"
    major = mime.partition("/")[0]
    return major if major in ("image", "audio", "video") else "document"


def split_subcommand(text: str, names: Iterable[str]) -> tuple[str, str] | None:
    """`ask what is 2+2` -> ("ask", "what is 2+2"); None asks for the help list. Text that
    does not start with a known subcommand is a question, so `/decapod why?` just works."""
    # any whitespace ends the subcommand: "remind\nin 10m stretch" from a multi-line box
    head, *tail = text.split(None, 1) or [""]
    rest = tail[0] if tail else ""
    name = head.lstrip("/").lower()
    known = set(names)
    if not name or name == "help":
        return None
    if name in known:
        return name, rest.strip()
    return ("ask", text.strip()) if "ask" in known else None


def help_text(slash_command: str, commands: Sequence[CommandSpec]) -> str:
    lines = [f"`{slash_command} help` — List these subcommands"]
    for spec in commands:
        if spec.name == "help":
            continue
        usage = f" {spec.usage}" if spec.usage else ""
        lines.append(
            f"`{escape(f'{slash_command} {spec.name}{usage}')}` — {escape(spec.description)}"
        )
    return "\n".join(lines)


class ThreadMemory:
    """Threads the bot has posted in (channel, root ts), so that replies in them reach it
    without a new mention. Kept in the store (bot/channel_state.py), shared by every
    replica; this process's memory holds the newest `limit` it saw, so a known thread costs
    no lookup. Without the store (a channel used on its own) only that memory is kept.

    An earlier version kept them in a JSON file in the home: `open` imports it into the
    store once and renames it `*.imported`."""

    def __init__(self, path: Path | None, limit: int = 5000) -> None:
        #: the JSON file an earlier version kept, imported into the store once
        self.path = path
        self.limit = limit
        self.channel = ""
        self._threads: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._state: ThreadState | None = None

    def use(self, state: ThreadState, channel: str) -> None:
        self._state, self.channel = state, channel

    def __contains__(self, key: object) -> bool:
        return key in self._threads

    def __len__(self) -> int:
        return len(self._threads)

    async def open(self) -> None:
        """Import the file an earlier version kept (once: it is renamed after)."""
        if self._state is None or self.path is None:
            return
        entries = await asyncio.to_thread(self._read_old_file)
        if entries is None:
            return
        for key in entries[-self.limit :]:
            self._remember(key)
        await self._state.add_threads(self.channel, entries)
        try:
            await asyncio.to_thread(self.path.replace, self.path.with_suffix(".json.imported"))
        except OSError as exc:
            log.warning("slack: cannot rename the imported file %s: %s", self.path, exc)
        log.info("slack: imported %d threads from %s", len(entries), self.path)

    def _read_old_file(self) -> list[tuple[str, str]] | None:
        assert self.path is not None
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))
            return [(str(channel), str(ts)) for channel, ts in entries]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            # losing this only means one extra mention in old threads
            log.warning("slack: ignoring unreadable thread list %s: %s", self.path, exc)
            return None

    async def add(self, channel: str, ts: str) -> None:
        key = (channel, ts)
        if key in self._threads:
            self._threads.move_to_end(key)
            return
        self._remember(key)
        if self._state is not None:
            await self._state.add_threads(self.channel, [key])

    async def recall(self, channel: str, ts: str) -> None:
        """Learn whether another replica (or this one before a restart) posted in the thread:
        afterwards `(channel, ts) in self` says it. A thread known here costs nothing."""
        key = (channel, ts)
        if key in self._threads or self._state is None:
            return
        if await self._state.has_thread(self.channel, channel, ts):
            self._remember(key)

    def _remember(self, key: tuple[str, str]) -> None:
        self._threads[key] = None
        while len(self._threads) > self.limit:
            self._threads.popitem(last=False)


class RecentDeliveries:
    """Keys of deliveries handed on recently. A delivery whose key is being handed on right
    now waits for that outcome: if it failed, this one goes ahead (Slack's retry after a
    real failure must be processed); if it succeeded, this one is a duplicate."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._done: OrderedDict[str, None] = OrderedDict()
        self._pending: dict[str, asyncio.Future[bool]] = {}

    async def claim(self, keys: Sequence[str]) -> bool:
        while True:
            if any(k in self._done for k in keys):
                return False
            pending = next((self._pending[k] for k in keys if k in self._pending), None)
            if pending is None:
                break
            if await asyncio.shield(pending):
                return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        for key in keys:
            self._pending[key] = future
        return True

    def settle(self, keys: Sequence[str], handed_on: bool) -> None:
        future = None
        for key in keys:
            future = self._pending.pop(key, future)
            if handed_on:
                self._done[key] = None
        while len(self._done) > self.limit:
            self._done.popitem(last=False)
        if future is not None and not future.done():
            future.set_result(handed_on)
