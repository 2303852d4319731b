"""The model_choices table: who picked which model with /model (SQL stays in bot/store)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.store import Conn, Store

#: the scope of the owner's choice for everyone
EVERYONE = "*"


class ModelChoiceRepo:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def all(self) -> dict[str, str]:
        """scope -> "provider:model" for every stored choice."""

        def op(conn: Conn) -> dict[str, str]:
            return {
                str(scope): str(model)
                for scope, model in conn.execute("SELECT scope, model FROM model_choices")
            }

        return await self.store.read(op)

    async def set(
        self,
        scope: str,
        model: str | None,
        set_by: str,
        also: Sequence[Callable[[Conn], None]] = (),
    ) -> None:
        """Store a choice, or drop it (model None); `also` runs in the same transaction (a
        notification to the other replicas, sent only if the change is committed)."""
        now = time.time()

        def op(conn: Conn) -> None:
            if model is None:
                conn.execute("DELETE FROM model_choices WHERE scope = ?", (scope,))
            else:
                conn.execute(
                    "INSERT INTO model_choices VALUES (?, ?, ?, ?) ON CONFLICT(scope) DO UPDATE "
                    "SET model = excluded.model, set_by = excluded.set_by, "
                    "updated_at = excluded.updated_at",
                    (scope, model, set_by, now),
                )
            for step in also:
                step(conn)

        await self.store.write(op)
