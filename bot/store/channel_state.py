"""The channel_* tables: what adapters keep between messages (bot/channel_state.py), on
SQLite and PostgreSQL alike. SQL stays in bot/store.

Writes go through the store's per-tick batch, so a message sent with buttons or a Slack
thread remembered costs no transaction of its own. Taking a message's buttons is one
conditional UPDATE, so two replicas racing on one press (or two presses) take it once.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from bot.channel_state import ButtonChoice, ButtonMessage
from bot.messages import Conversation, ConversationKind

if TYPE_CHECKING:
    from bot.store import Conn, Store

#: how often expired buttons and old threads are pruned (on a write that comes along)
PRUNE_EVERY_S = 600.0
#: how long a Slack thread the bot posted in keeps reaching it without a mention
THREAD_TTL_S = 180 * 86400.0


class ChannelStateRepo:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._next_prune = 0.0

    # buttons -------------------------------------------------------------------------------
    async def put_buttons(self, channel: str, messages: list[ButtonMessage]) -> None:
        now = time.time()
        prune = self._prune_due(now)
        rows = [_button_row(channel, m) for m in messages]
        tokens = [
            (channel, c.token, m.key, i, c.label, c.command)
            for m in messages
            for i, c in enumerate(m.choices)
        ]

        def op(conn: Conn) -> None:
            if prune:
                _prune(conn, now)
            conn.executemany(
                "INSERT OR IGNORE INTO channel_buttons VALUES (?, ?, ?, ?, ?, ?, ?)", rows
            )
            conn.executemany(
                "INSERT OR IGNORE INTO channel_button_tokens VALUES (?, ?, ?, ?, ?, ?)", tokens
            )

        await self.store.write(op, cheap=not prune)

    async def find_buttons(self, channel: str, token: str) -> ButtonMessage | None:
        def op(conn: Conn) -> ButtonMessage | None:
            row = conn.execute(
                "SELECT b.key, b.conversation, b.shown, b.expires_at, b.allowed, b.used_by "
                "FROM channel_button_tokens t JOIN channel_buttons b "
                "ON b.channel = t.channel AND b.key = t.key "
                "WHERE t.channel = ? AND t.token = ?",
                (channel, token),
            ).fetchone()
            if row is None:
                return None
            choices = conn.execute(
                "SELECT token, label, command FROM channel_button_tokens "
                "WHERE channel = ? AND key = ? ORDER BY position",
                (channel, row[0]),
            ).fetchall()
            return _button_message(row, choices)

        return await self.store.peek(op)

    async def use_buttons(self, channel: str, key: str, press_id: str, now: float) -> bool:
        def op(conn: Conn) -> bool:
            cur = conn.execute(
                "UPDATE channel_buttons SET used_by = ? WHERE channel = ? AND key = ? "
                "AND (used_by IS NULL OR used_by = ?) AND expires_at >= ?",
                (press_id, channel, key, press_id, now),
            )
            return bool(cur.rowcount == 1)

        return await self.store.write(op, cheap=True)

    async def give_back_buttons(self, channel: str, key: str, press_id: str) -> None:
        def op(conn: Conn) -> None:
            conn.execute(
                "UPDATE channel_buttons SET used_by = NULL "
                "WHERE channel = ? AND key = ? AND used_by = ?",
                (channel, key, press_id),
            )

        await self.store.write(op, cheap=True)

    def _prune_due(self, now: float) -> bool:
        """Whether the write being made also prunes (once per PRUNE_EVERY_S)."""
        if now < self._next_prune:
            return False
        self._next_prune = now + PRUNE_EVERY_S
        return True

    # Slack threads ---------------------------------------------------------------------------
    async def add_threads(self, channel: str, threads: list[tuple[str, str]]) -> None:
        now = time.time()
        prune = self._prune_due(now)
        rows = [(channel, chat, ts, now) for chat, ts in threads]

        def op(conn: Conn) -> None:
            if prune:
                _prune(conn, now)
            conn.executemany("INSERT OR IGNORE INTO channel_threads VALUES (?, ?, ?, ?)", rows)

        await self.store.write(op, cheap=not prune)

    async def has_thread(self, channel: str, chat: str, ts: str) -> bool:
        def op(conn: Conn) -> bool:
            return (
                conn.execute(
                    "SELECT 1 FROM channel_threads WHERE channel = ? AND chat = ? AND ts = ?",
                    (channel, chat, ts),
                ).fetchone()
                is not None
            )

        return await self.store.peek(op)

    # Telegram chat moves ---------------------------------------------------------------------
    async def add_chat_move(self, channel: str, old: str, new: str) -> None:
        def op(conn: Conn) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO channel_chat_moves VALUES (?, ?, ?)", (channel, new, old)
            )

        await self.store.write(op)

    async def chat_moves(self, channel: str) -> dict[str, str]:
        def op(conn: Conn) -> dict[str, str]:
            rows = conn.execute(
                "SELECT new_id, old_id FROM channel_chat_moves WHERE channel = ?", (channel,)
            )
            return {str(new): str(old) for new, old in rows}

        return await self.store.peek(op)  # by the key's first column, read at the start


def _prune(conn: Conn, now: float) -> None:
    conn.execute(
        "DELETE FROM channel_button_tokens WHERE EXISTS (SELECT 1 FROM channel_buttons b "
        "WHERE b.channel = channel_button_tokens.channel AND b.key = channel_button_tokens.key "
        "AND b.expires_at < ?)",
        (now,),
    )
    conn.execute("DELETE FROM channel_buttons WHERE expires_at < ?", (now,))
    conn.execute("DELETE FROM channel_threads WHERE added_at < ?", (now - THREAD_TTL_S,))


def _button_row(
    channel: str, m: ButtonMessage
) -> tuple[str, str, str, str, float, str, str | None]:
    c = m.conversation
    conversation = json.dumps([c.channel, c.chat_id, c.kind.value, c.thread_id])
    return (channel, m.key, conversation, m.text, m.expires_at, json.dumps(m.allowed), m.used_by)


def _button_message(
    row: tuple[str, str, str, float, str, str | None], choices: list[tuple[str, str, str]]
) -> ButtonMessage:
    key, conversation, shown, expires_at, allowed, used_by = row
    name, chat_id, kind, thread_id = json.loads(conversation)
    return ButtonMessage(
        key=str(key),
        conversation=Conversation(str(name), str(chat_id), ConversationKind(kind), thread_id),
        text=str(shown),
        expires_at=float(expires_at),
        allowed=tuple(json.loads(allowed)),
        choices=tuple(ButtonChoice(str(t), str(lb), str(cmd)) for t, lb, cmd in choices),
        used_by=used_by,
    )
