"""The web UI's tables: browser logins, messages sent to a web chat outside a turn, passkeys
and pairing links (SQL stays in bot/store)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.store import Conn, Store


@dataclass(frozen=True, slots=True)
class WebSessionRow:
    user: str
    name: str
    role: str
    csrf: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class PasskeyRow:
    credential_id: str
    public_key: bytes
    sign_count: int
    created_at: float
    last_used: float | None


class WebUIRepo:
    def __init__(self, store: Store) -> None:
        self.store = store

    # logins -------------------------------------------------------------------------------
    async def add_session(self, key: str, row: WebSessionRow, *, keep: int) -> None:
        """Store a login; expired ones go, and past `keep` logins the oldest go too."""
        now = time.time()

        def op(conn: Conn) -> None:
            conn.execute("DELETE FROM web_sessions WHERE expires_at < ?", (now,))
            conn.execute(
                "INSERT INTO web_sessions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, row.user, row.name, row.role, row.csrf, now, row.expires_at),
            )
            conn.execute(
                """DELETE FROM web_sessions WHERE key NOT IN
                   (SELECT key FROM web_sessions ORDER BY created_at DESC LIMIT ?)""",
                (keep,),
            )

        await self.store.write(op)

    async def session(self, key: str) -> WebSessionRow | None:
        def op(conn: Conn) -> WebSessionRow | None:
            row = conn.execute(
                "SELECT user, name, role, csrf, expires_at FROM web_sessions WHERE key = ?",
                (key,),
            ).fetchone()
            return WebSessionRow(*row) if row else None

        return await self.store.read(op)

    async def end_session(self, key: str) -> None:
        await self.store.write(
            lambda c: c.execute("DELETE FROM web_sessions WHERE key = ?", (key,))
        )

    async def end_sessions_of(self, user: str) -> int:
        def op(conn: Conn) -> int:
            return int(conn.execute("DELETE FROM web_sessions WHERE user = ?", (user,)).rowcount)

        return await self.store.write(op)

    # the chat's history ----------------------------------------------------------------------
    async def remember(self, chat_id: str, text: str, answer_id: str) -> None:
        now = time.time()
        await self.store.write(
            lambda c: c.execute(
                "INSERT INTO web_messages (chat_id, text, created_at, answer_id) "
                "VALUES (?, ?, ?, ?)",
                (chat_id, text, now, answer_id),
            )
        )

    async def history(
        self, session_key: str, chat_id: str, limit: int
    ) -> list[tuple[str, str, str]]:
        """(role, text, answer id) of the newest messages of the session's current
        generation, oldest first: its user and assistant turns, and what was sent to the chat
        outside a turn. An answer's id is the one the chat streamed it under (the id of the
        message it answers, channels/web.py); '' for the person's own messages."""

        def op(conn: Conn) -> list[tuple[str, str, str]]:
            rows = _said(conn, session_key, chat_id, limit, ("user", "assistant"), 0.0)
            return [_history_item(role, text, answer, chat_id) for role, text, answer, _ in rows]

        return await self.store.read(op)

    async def answers_since(
        self, session_key: str, chat_id: str, since: float, limit: int
    ) -> list[tuple[str, str, str]]:
        """(answer id, id of the message it answers, text) of the answers said in the chat
        from `since` on, oldest first, read as `history` reads them (at most `limit` rows):
        the turns' answers (an answer of several rows is their text joined, as the page joins
        them from the history) and what was sent outside a turn (it answers no message). When
        the rows reach `limit`, the oldest answer is left out: its first rows may be cut."""

        turn_of = web_turn_id(chat_id)

        def op(conn: Conn) -> list[tuple[str, str, str]]:
            rows = _said(conn, session_key, chat_id, limit, ("assistant",), since)
            said: dict[str, tuple[str, str]] = {}
            for _role, text, answer, sent in rows:
                if sent and answer:
                    said[answer] = ("", text)
                elif not sent and answer.startswith(turn_of):
                    answer = answer[len(turn_of) :]
                    said[answer] = (answer, said.get(answer, ("", ""))[1] + text)
            if len(rows) >= limit and said:
                del said[next(iter(said))]
            return [(answer, re_, text) for answer, (re_, text) in said.items()]

        return await self.store.read(op)

    async def turns_stored(self, turn_ids: list[str]) -> set[str]:
        """Which of these turns have their answer in the history."""
        if not turn_ids:
            return set()
        marks = ", ".join("?" for _ in turn_ids)

        def op(conn: Conn) -> set[str]:
            rows = conn.execute(
                f"SELECT DISTINCT turn_id FROM turns WHERE role = 'assistant' "
                f"AND turn_id IN ({marks})",
                tuple(turn_ids),
            ).fetchall()
            return {str(r[0]) for r in rows}

        return await self.store.read(op)

    # pairing links ---------------------------------------------------------------------------
    async def add_invite(self, key: str, name: str, ttl_s: float) -> None:
        now = time.time()

        def op(conn: Conn) -> None:
            conn.execute("DELETE FROM web_invites WHERE expires_at < ?", (now,))
            conn.execute(
                "INSERT INTO web_invites VALUES (?, ?, ?, ?)", (key, name, now, now + ttl_s)
            )

        await self.store.write(op)

    async def invite(self, key: str) -> str | None:
        """The name a live link was made for."""

        def op(conn: Conn) -> str | None:
            row = conn.execute(
                "SELECT name FROM web_invites WHERE key = ? AND expires_at >= ?", (key, time.time())
            ).fetchone()
            return row[0] if row else None

        return await self.store.read(op)

    async def redeem_invite(
        self, key: str, channel: str, user_id: str, approved_by: str
    ) -> str | None:
        """Use a live link once: the new person is paired on `channel` in the same
        transaction. Returns the name, or None when the link is used up or expired."""

        def op(conn: Conn) -> str | None:
            now = time.time()
            row = conn.execute(
                "SELECT name FROM web_invites WHERE key = ? AND expires_at >= ?", (key, now)
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM web_invites WHERE key = ?", (key,))
            conn.execute(
                "INSERT OR REPLACE INTO paired VALUES (?, ?, ?, ?, ?)",
                (channel, user_id, row[0], now, approved_by),
            )
            return str(row[0])

        return await self.store.write(op)

    async def open_invites(self) -> list[tuple[str, float]]:
        """(name, expires_at) of the links not used yet."""

        def op(conn: Conn) -> list[tuple[str, float]]:
            rows = conn.execute(
                "SELECT name, expires_at FROM web_invites WHERE expires_at >= ? "
                "ORDER BY created_at",
                (time.time(),),
            ).fetchall()
            return [(r[0], r[1]) for r in rows]

        return await self.store.read(op)

    # passkeys --------------------------------------------------------------------------------
    async def add_passkey(self, credential_id: str, public_key: bytes, sign_count: int) -> None:
        now = time.time()
        await self.store.write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO web_passkeys VALUES (?, ?, ?, ?, NULL)",
                (credential_id, public_key, sign_count, now),
            )
        )

    async def passkeys(self) -> list[PasskeyRow]:
        def op(conn: Conn) -> list[PasskeyRow]:
            rows = conn.execute(
                "SELECT credential_id, public_key, sign_count, created_at, last_used "
                "FROM web_passkeys ORDER BY created_at"
            ).fetchall()
            return [PasskeyRow(r[0], bytes(r[1]), *r[2:]) for r in rows]

        return await self.store.peek(op)  # a handful of rows, read at the start and sign-in

    async def passkey_used(self, credential_id: str, sign_count: int) -> None:
        now = time.time()
        await self.store.write(
            lambda c: c.execute(
                "UPDATE web_passkeys SET sign_count = ?, last_used = ? WHERE credential_id = ?",
                (sign_count, now, credential_id),
            )
        )

    async def remove_passkey(self, credential_id: str) -> bool:
        def op(conn: Conn) -> bool:
            cur = conn.execute("DELETE FROM web_passkeys WHERE credential_id = ?", (credential_id,))
            return bool(cur.rowcount)

        return await self.store.write(op)


def _said(
    conn: Conn, session_key: str, chat_id: str, limit: int, roles: tuple[str, ...], since: float
) -> list[tuple[str, str, str, bool]]:
    """(role, text, answer or turn id, sent outside a turn) of the newest `limit` messages of the
    chat's current session from `since` on, oldest first. Each side reads its newest rows
    by id (its index) and stops at `limit` rows: with `since` 0 (`history`) a long history
    is not scanned whole. With a `since` (`answers_since`) no index covers created_at: the
    older rows are read and dropped one by one, so when fewer than `limit` are from `since`
    on, the session's rows (and the chat's sent messages) are walked back to the first."""
    session = conn.execute(
        "SELECT id, created_at FROM sessions WHERE key = ? ORDER BY id DESC LIMIT 1",
        (session_key,),
    ).fetchone()
    session_id, started = session if session else (None, 0.0)
    marks = ", ".join("?" for _ in roles)
    rows = conn.execute(
        f"""SELECT role, text, answer, sent FROM (
             SELECT * FROM (
               SELECT t.role AS role, t.content AS text, t.created_at AS at, t.id AS n,
                      t.turn_id AS answer, 0 AS sent
                 FROM turns t WHERE t.session_id = ? AND t.role IN ({marks})
                 AND t.content != '' AND t.created_at >= ? ORDER BY t.id DESC LIMIT ?) AS t
             UNION ALL
             SELECT * FROM (
               SELECT 'assistant', m.text, m.created_at, m.id, m.answer_id, 1
                 FROM web_messages m WHERE m.chat_id = ? AND m.created_at >= ?
                 ORDER BY m.id DESC LIMIT ?) AS m) AS said
           ORDER BY at DESC, n DESC LIMIT ?""",
        (session_id, *roles, since, limit, chat_id, max(since, started), limit, limit),
    ).fetchall()
    return [(r[0], r[1], r[2], bool(r[3])) for r in reversed(rows)]


def web_turn_id(chat_id: str, message_id: str = "") -> str:
    """The id of the turn that answers a page's message: "web:<person>:<message id>" (every
    row of its answer is stored under it); without a message id, what all of that person's
    turn ids begin with."""
    return f"web:{chat_id}:{message_id}"


def _history_item(role: str, text: str, answer: str, chat_id: str) -> tuple[str, str, str]:
    # a turn's id is "web:<person>:<the page's message id>", and its answer was streamed
    # under that message id; a message sent outside a turn keeps its own
    turn_of = web_turn_id(chat_id)
    if role != "assistant":
        answer = ""
    elif answer.startswith(turn_of):
        answer = answer[len(turn_of) :]
    return role, text, answer
