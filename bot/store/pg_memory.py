"""Memory search on PostgreSQL: full text through the chunks' `tsv` column (GIN-indexed, the
text weighted above its context); vectors in a pgvector column ranked in SQL per owner
(bot/store/pg_vectors.py), or, without the extension, as float32 bytes ranked in process per
owner.

Everything else of memory (items, chunks, forgetting, knowledge files, links) is the SQLite
repository's SQL, translated (bot/store/pg_dialect.py). As there, every query takes the owners
it may return and filters on them in SQL.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bot.store.memory import ItemRow, MemoryRepo, SearchRows, search_rows
from bot.store.memory_items import item_rows
from bot.store.memory_vectors import VEC_TABLE, vec_model
from bot.store.pg_vectors import nearest

if TYPE_CHECKING:
    from bot.store import Conn, Store
    from bot.store.postgres import PgConnection

#: the words of an FTS5 expression made by bot/memory/text.py's fts_match: each a quoted
#: string of letters and digits
_TERM = re.compile(r'"(\w+)"')
#: two words joined by AND: only the words part quotes its words (owner tags are bare), so
#: this holds whatever column set the words are searched in (`text`, or `{text context}`)
_ALL_TERMS = re.compile(r'"\w+" AND "')


def memory_repo(store: Store) -> MemoryRepo:
    """The memory repository for `store`'s backend."""
    if getattr(store, "backend", "sqlite") == "postgresql":
        return PgMemoryRepo(store)
    return MemoryRepo(store)


def tsquery(match: str) -> str | None:
    """The tsquery text of an FTS5 expression from fts_match (its owner part is dropped:
    owners are filtered by column here). Its words are letters and digits only."""
    words = [w for w in _TERM.findall(match) if w.strip("_")]
    if not words:
        return None
    joiner = " & " if _ALL_TERMS.search(match) else " | "
    return joiner.join(words)


class PgMemoryRepo(MemoryRepo):
    async def matching(self, owner: str, match: str) -> list[ItemRow]:
        query = tsquery(match)
        if query is None:
            return []

        def op(conn: Conn) -> list[ItemRow]:
            return item_rows(
                conn,
                "owner = ? AND id IN (SELECT item_id FROM memory_chunks WHERE owner = ?"
                " AND tsv @@ to_tsquery('english', ?)) ORDER BY id",
                (owner, owner, query),
            )

        return await self.store.read(op)

    async def search(
        self,
        owners: list[str],
        match: str | None,
        vector: bytes | None,
        model: str | None,
        limit: int,
        now: float,
        context_weight: float = 0.5,
    ) -> SearchRows:
        query = tsquery(match) if match else None

        def op(conn: PgConnection) -> SearchRows:
            oqs = ",".join("?" * len(owners))
            found = []
            if query is not None:
                # weights are {D, C, B, A}: the text is A, its context C
                found = conn.execute(
                    "SELECT id, ts_rank(array[0, ?, 0, 1]::float4[], tsv, q) AS score"
                    " FROM memory_chunks, to_tsquery('english', ?) AS q"
                    f" WHERE owner IN ({oqs}) AND tsv @@ q ORDER BY score DESC, id LIMIT ?",
                    (context_weight, query, *owners, limit),
                ).fetchall()
            keyword = [int(r[0]) for r in found]
            keyword_score = {int(r[0]): float(r[1]) for r in found}
            closest: list[tuple[float, int]] = []
            recorded = vec_model(conn) if vector is not None else None
            if vector is not None and recorded is not None and recorded[0] == model:
                if conn.pgvector:
                    closest = nearest(conn, VEC_TABLE, vector, owners, limit)
                else:
                    closest = _nearest(conn, vector, owners, limit)
            return search_rows(conn, keyword, keyword_score, closest, owners, now)

        return await self.store.read(op)


def _nearest(conn: Conn, vector: bytes, owners: list[str], limit: int) -> list[tuple[float, int]]:
    """(cosine distance, chunk id) of the `limit` nearest vectors among `owners`' chunks,
    one owner's vectors at a time."""
    import numpy as np

    want = np.frombuffer(vector, dtype=np.float32)
    norm = float(np.linalg.norm(want)) or 1.0
    best: list[tuple[float, int]] = []
    for owner in owners:
        rows = conn.execute(
            f"SELECT chunk_id, embedding FROM {VEC_TABLE} WHERE owner = ?", (owner,)
        ).fetchall()
        if not rows:
            continue
        matrix = np.stack([np.frombuffer(bytes(r[1]), dtype=np.float32) for r in rows])
        norms = np.linalg.norm(matrix, axis=1)
        norms[norms == 0] = 1.0
        distance = 1.0 - (matrix @ want) / (norms * norm)
        best += [(float(d), int(r[0])) for d, r in zip(distance, rows, strict=True)]
    return sorted(best)[:limit]
