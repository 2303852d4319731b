"""What the web UI keeps in the store so that any replica behind a balancer can answer the next
request: passkey challenges, and (on PostgreSQL) the chat page's uploads as rows."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.store import Conn, Store


@dataclass(frozen=True, slots=True)
class UploadRow:
    id: str
    person: str
    name: str
    mime: str
    size: int
    kind: str
    created_at: float


class WebSharedRepo:
    def __init__(self, store: Store) -> None:
        self.store = store

    # passkey challenges --------------------------------------------------------------------
    async def put_challenge(self, key: str, challenge: bytes, ttl_s: float, *, keep: int) -> None:
        """Keep `challenge` for `key` (replacing one it had); expired ones go, and past `keep`
        open ones the oldest go too (a flood of requests cannot grow the table)."""
        now = time.time()

        def op(conn: Conn) -> None:
            conn.execute("DELETE FROM web_challenges WHERE expires_at < ?", (now,))
            # one statement: two replicas issuing a challenge for one key do not collide
            conn.execute(
                "INSERT INTO web_challenges VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE "
                "SET challenge = excluded.challenge, expires_at = excluded.expires_at",
                (key, challenge, now + ttl_s),
            )
            conn.execute(
                """DELETE FROM web_challenges WHERE key NOT IN
                   (SELECT key FROM web_challenges ORDER BY expires_at DESC LIMIT ?)""",
                (keep,),
            )

        await self.store.write(op, cheap=True)

    async def take_challenge(self, key: str) -> bytes | None:
        """The live challenge of `key`, removed in the same transaction: one use only, even
        when two replicas are answered at once."""
        now = time.time()

        def op(conn: Conn) -> bytes | None:
            row = conn.execute(
                "SELECT challenge, expires_at FROM web_challenges WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            gone = conn.execute("DELETE FROM web_challenges WHERE key = ?", (key,)).rowcount
            return bytes(row[0]) if gone and row[1] >= now else None

        return await self.store.write(op, cheap=True)

    # uploads ---------------------------------------------------------------------------------
    async def add_upload(self, row: UploadRow, data: bytes | bytearray, quota: int) -> bool:
        """Store an upload unless the person's kept uploads would pass `quota` with it (False):
        the sum is read in the writing transaction, after a lock of the person's (on
        PostgreSQL, whose READ COMMITTED would let two replicas both read the sum before
        either adds; SQLite runs one writer at a time), so two replicas cannot both fit one."""
        postgres = self.store.backend == "postgresql"

        def op(conn: Conn) -> bool:
            if postgres:
                conn.execute(_LOCK_PERSON, (row.person,))
            if _kept(conn, row.person) + row.size > quota:
                return False
            conn.execute(
                "INSERT INTO web_uploads VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (row.id, row.person, row.name, row.mime, row.size, row.kind, row.created_at, data),
            )
            return True

        return await self.store.write(op)

    async def kept_bytes(self, person: str) -> int:
        return await self.store.read(lambda conn: _kept(conn, person))

    async def upload(self, upload_id: str, since: float) -> UploadRow | None:
        def op(conn: Conn) -> UploadRow | None:
            row = conn.execute(
                "SELECT id, person, name, mime, size, kind, created_at FROM web_uploads "
                "WHERE id = ? AND created_at >= ?",
                (upload_id, since),
            ).fetchone()
            return UploadRow(*row) if row else None

        return await self.store.read(op)

    async def upload_data(self, upload_id: str) -> bytes | None:
        def op(conn: Conn) -> bytes | None:
            row = conn.execute("SELECT data FROM web_uploads WHERE id = ?", (upload_id,)).fetchone()
            return bytes(row[0]) if row else None

        return await self.store.read(op)

    async def prune_uploads(self, before: float) -> int:
        def op(conn: Conn) -> int:
            return int(
                conn.execute("DELETE FROM web_uploads WHERE created_at < ?", (before,)).rowcount
            )

        return await self.store.write(op)


#: the first key of the advisory locks that serialize one person's uploads (the second is
#: the hash of the person): apart from the migration lock's single key
_LOCK_PERSON = "SELECT pg_advisory_xact_lock(22357, hashtext(?))"


def _kept(conn: Conn, person: str) -> int:
    row = conn.execute(
        "SELECT COALESCE(SUM(size), 0) FROM web_uploads WHERE person = ?", (person,)
    ).fetchone()
    return int(row[0])
