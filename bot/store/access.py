"""SQL of the access layer: approved (paired) people and pending pairing codes."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.store import Conn, Store


@dataclass(frozen=True, slots=True)
class PairingCode:
    code: str
    channel: str
    user_id: str
    display_name: str
    expires_at: float


class AccessRepo:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._revokes = 0

    @property
    def revision(self) -> int:
        """Changes whenever an approval may have been withdrawn: by a revoke through this
        store, or by any commit of another process (`decapod pairing revoke`), which the
        store's writer notices at its next batch. Every delivery is stored (a batch) before
        access is decided, so a cache checked against this is never a message behind."""
        return self._revokes + self.store.foreign_commits

    async def is_paired(self, channel: str, user_id: str) -> bool:
        def op(conn: Conn) -> bool:
            return (
                conn.execute(
                    "SELECT 1 FROM paired WHERE channel = ? AND user_id = ?", (channel, user_id)
                ).fetchone()
                is not None
            )

        return await self.store.read(op)

    async def issue_code(
        self,
        code: str,
        channel: str,
        user_id: str,
        display_name: str,
        ttl_s: float,
        max_pending: int,
    ) -> PairingCode | None:
        """The person's live code (reused), a new one, or None when the channel has too many
        pending codes already."""

        def op(conn: Conn) -> PairingCode | None:
            now = time.time()
            conn.execute("DELETE FROM pairing_codes WHERE expires_at < ?", (now,))
            row = conn.execute(
                "SELECT code, channel, user_id, display_name, expires_at FROM pairing_codes "
                "WHERE channel = ? AND user_id = ?",
                (channel, user_id),
            ).fetchone()
            if row:
                return PairingCode(*row)
            pending = conn.execute(
                "SELECT count(*) FROM pairing_codes WHERE channel = ?", (channel,)
            ).fetchone()[0]
            if pending >= max_pending:
                return None
            conn.execute(
                "INSERT INTO pairing_codes VALUES (?, ?, ?, ?, ?, ?)",
                (code, channel, user_id, display_name, now, now + ttl_s),
            )
            return PairingCode(code, channel, user_id, display_name, now + ttl_s)

        return await self.store.write(op)

    async def approve(self, code: str, approved_by: str) -> PairingCode | None:
        def op(conn: Conn) -> PairingCode | None:
            row = conn.execute(
                "SELECT code, channel, user_id, display_name, expires_at FROM pairing_codes "
                "WHERE code = ? AND expires_at >= ?",
                (code.upper(), time.time()),
            ).fetchone()
            if row is None:
                return None
            found = PairingCode(*row)
            conn.execute(
                "INSERT OR REPLACE INTO paired VALUES (?, ?, ?, ?, ?)",
                (found.channel, found.user_id, found.display_name, time.time(), approved_by),
            )
            conn.execute("DELETE FROM pairing_codes WHERE code = ?", (found.code,))
            return found

        return await self.store.write(op)

    async def deny(self, code: str) -> PairingCode | None:
        """Withdraw a pending code; the person is told nothing and may ask again later."""

        def op(conn: Conn) -> PairingCode | None:
            row = conn.execute(
                "SELECT code, channel, user_id, display_name, expires_at FROM pairing_codes "
                "WHERE code = ? AND expires_at >= ?",
                (code.upper(), time.time()),
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM pairing_codes WHERE code = ?", (row[0],))
            return PairingCode(*row)

        return await self.store.write(op)

    async def revoke(self, channel: str, user_id: str) -> bool:
        def op(conn: Conn) -> bool:
            return bool(
                conn.execute(
                    "DELETE FROM paired WHERE channel = ? AND user_id = ?", (channel, user_id)
                ).rowcount
            )

        revoked = await self.store.write(op)
        self._revokes += revoked
        return revoked

    async def pending(self) -> list[PairingCode]:
        def op(conn: Conn) -> list[PairingCode]:
            rows = conn.execute(
                "SELECT code, channel, user_id, display_name, expires_at FROM pairing_codes "
                "WHERE expires_at >= ? ORDER BY created_at",
                (time.time(),),
            ).fetchall()
            return [PairingCode(*r) for r in rows]

        return await self.store.read(op)

    async def paired(self) -> list[tuple[str, str, str]]:
        def op(conn: Conn) -> list[tuple[str, str, str]]:
            return [
                tuple(r)
                for r in conn.execute(
                    "SELECT channel, user_id, display_name FROM paired ORDER BY approved_at"
                ).fetchall()
            ]

        return await self.store.read(op)
