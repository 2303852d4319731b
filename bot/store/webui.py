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
