"""The replicas table: the heartbeats of the gateway processes sharing this database
(bot/cluster/registry.py; SQL stays in bot/store)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.store import Conn, Store


@dataclass(frozen=True, slots=True)
class ReplicaRow:
    id: str
    host: str
    pid: int
    started_at: float
    role: str
    seen_at: float


class ReplicaRepo:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def beat(self, row: ReplicaRow, *, forget_before: float) -> None:
        """Say this replica is alive in its role; rows not seen since `forget_before` go."""

        def op(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO replicas VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "role = excluded.role, seen_at = excluded.seen_at",
                (row.id, row.host, row.pid, row.started_at, row.role, row.seen_at),
            )
            conn.execute("DELETE FROM replicas WHERE seen_at < ?", (forget_before,))

        await self.store.write(op)

    async def seen_since(self, since: float) -> list[ReplicaRow]:
        """The replicas that beat at or after `since`, oldest first."""

        def op(conn: Conn) -> list[ReplicaRow]:
            rows = conn.execute(
                "SELECT id, host, pid, started_at, role, seen_at FROM replicas "
                "WHERE seen_at >= ? ORDER BY started_at, id",
                (since,),
            ).fetchall()
            return [
                ReplicaRow(str(i), str(h), int(p), float(s), str(r), float(seen))
                for i, h, p, s, r, seen in rows
            ]

        return await self.store.read(op)

    async def remove(self, replica_id: str) -> None:
        await self.store.write(
            lambda c: c.execute("DELETE FROM replicas WHERE id = ?", (replica_id,))
        )
