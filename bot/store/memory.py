"""SQL for per-person memory: items, their chunks, the FTS5 index (kept by triggers), the
search over it and the sqlite-vec table, knowledge files, link codes. The item rows and the
SQL that inserts, deletes and moves them are in bot/store/memory_items.py; the vector
table's own upkeep and the embedding cache are in bot/store/memory_vectors.py.

Every query that returns memory takes the owners it may return and filters on them in SQL,
so one person's items can reach another only through a bug in these files.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.store.job_model import LIVE_SQL, OPEN_SQL
from bot.store.memory_items import (
    ItemRow,
    NewChunk,
    NewItem,
    delete_items,
    insert_item,
    item_rows,
    owner_tag,
    owners_of,
    place_owner,
    reown,
    split_owner,
)
from bot.store.memory_rows import (
    ChunkRow,
    SearchRows,
    following_rows,
    last_row,
    next_rows,
    search_rows,
)
from bot.store.memory_vectors import (
    VEC_TABLE,
    VectorRepo,
    first_column,
    in_batches,
    vec_model,
    vectors_usable,
)

if TYPE_CHECKING:
    from bot.store import Conn, Store

# the item rows and their SQL live in memory_items.py; named here too, where callers import them
__all__ = [
    "ChunkRow",
    "ItemRow",
    "MemoryRepo",
    "NewChunk",
    "NewItem",
    "SearchRows",
    "owner_tag",
    "place_owner",
    "search_rows",
    "split_owner",
]

SHARED = "shared"
_KNOWLEDGE_ITEM = "SELECT item_id FROM memory_knowledge_files WHERE path = ?"


class MemoryRepo:
    def __init__(self, store: Store) -> None:
        self.store = store
        #: the vector table, the model it is in, pending chunks, the embedding cache
        self.vectors = VectorRepo(store)

    # items -----------------------------------------------------------------------------------
    async def add(self, item: NewItem) -> tuple[int, bool]:
        """Store an item; returns (id, created). The same text for the same owner is not
        stored twice: the existing item is touched instead."""
        digest = hashlib.sha256(item.text.encode()).hexdigest()

        def op(conn: Conn) -> tuple[int, bool]:
            now = time.time()
            found = first_column(
                conn,
                "SELECT id FROM memory_items WHERE owner = ? AND text_hash = ? AND text = ?",
                (item.owner, digest, item.text),
            )
            if not found:
                return insert_item(conn, item, now), True
            # said again: as recent as the latest time it was said
            conn.execute(
                "UPDATE memory_items SET updated_at = max(updated_at, ?), expires_at = ?"
                " WHERE id = ?",
                (now if item.at is None else item.at, item.expires_at, found[0]),
            )
            return int(found[0]), False

        return await self.store.write(op)

    async def delete(self, owner: str, item_ids: Sequence[int] | None = None) -> list[ItemRow]:
        """Delete `item_ids` of `owner` (all of the owner's items when None); returns them."""

        def op(conn: Conn) -> list[ItemRow]:
            if item_ids is None:
                rows = item_rows(conn, "owner = ?", (owner,))
            else:
                rows = []
                for part, qs in in_batches(list(item_ids)):
                    rows += item_rows(conn, f"owner = ? AND id IN ({qs})", (owner, *part))
            delete_items(conn, [r.id for r in rows])
            return rows

        return await self.store.write(op)

    async def matching(self, owner: str, match: str) -> list[ItemRow]:
        """Items of `owner` with a chunk matching the FTS5 expression `match`."""

        def op(conn: Conn) -> list[ItemRow]:
            return item_rows(
                conn,
                "owner = ? AND id IN (SELECT c.item_id FROM memory_fts JOIN memory_chunks c"
                " ON c.id = memory_fts.rowid WHERE memory_fts MATCH ? AND c.owner = ?)"
                " ORDER BY id",
                (owner, match, owner),
            )

        return await self.store.read(op)

    async def items(self, owner: str) -> list[ItemRow]:
        return await self.store.read(lambda c: item_rows(c, "owner = ? ORDER BY id", (owner,)))

    async def owners(self) -> list[str]:
        return await self.store.read(
            lambda c: first_column(c, "SELECT DISTINCT owner FROM memory_items ORDER BY owner")
        )

    async def owners_of(self, person_id: str) -> list[str]:
        """Every owner of a person's items: their own, then one per group they saved in."""
        return await self.store.read(lambda c: owners_of(c, person_id))

    async def any_items(self, owners: list[str]) -> bool:
        """Whether any of `owners` has an item: an indexed lookup of one row."""
        marks = ", ".join("?" * len(owners))
        sql = f"SELECT 1 FROM memory_items WHERE owner IN ({marks}) LIMIT 1"
        return bool(await self.store.peek(lambda c: first_column(c, sql, owners)))

    async def count(self, owner: str) -> int:
        sql = "SELECT count(*) FROM memory_items WHERE owner = ?"
        return int((await self.store.read(lambda c: first_column(c, sql, (owner,))))[0])

    async def prune_expired(self, now: float) -> int:
        sql = "SELECT id FROM memory_items WHERE expires_at IS NOT NULL AND expires_at <= ?"
        return await self.store.write(lambda c: delete_items(c, first_column(c, sql, (now,))))

    # search ----------------------------------------------------------------------------------
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
        """Keyword and vector candidates among `owners`' unexpired items. The vector side
        runs only when `vector` is in the space of the model the index was built with.
        A word found in a chunk's context counts `context_weight` times one in its text."""

        def op(conn: Conn) -> SearchRows:
            fts = (
                "SELECT rowid, bm25(memory_fts, 1.0, 0.0, ?) AS score FROM memory_fts"
                " WHERE memory_fts MATCH ? ORDER BY score LIMIT ?"
            )
            found = conn.execute(fts, (context_weight, match, limit)).fetchall() if match else []
            keyword: list[int] = [int(r[0]) for r in found]
            # SQLite's bm25() is negative, more so for a better match
            keyword_score = {int(r[0]): -float(r[1]) for r in found}
            nearest: list[tuple[float, int]] = []
            recorded = vec_model(conn) if vector is not None else None
            if recorded is not None and recorded[0] == model and vectors_usable(conn):
                k = min(limit, 4096)
                for owner in owners:  # one KNN per partition: each touches only that owner
                    nearest += conn.execute(
                        f"SELECT distance, chunk_id FROM {VEC_TABLE} WHERE embedding MATCH ?"
                        " AND k = ? AND owner = ?",
                        (vector, k, owner),
                    ).fetchall()
            closest = sorted(nearest)[:limit]
            return search_rows(conn, keyword, keyword_score, closest, owners, now)

        return await self.store.read(op)

    async def next_turns(
        self, chunk_ids: list[int], owners: list[str], window_s: float, now: float
    ) -> dict[int, ChunkRow]:
        """The turn said just after each chunk (see `next_rows`)."""
        return await self.store.read(lambda conn: next_rows(conn, chunk_ids, owners, window_s, now))

    async def following_turns(
        self, chunk_ids: list[int], owners: list[str], count: int, window_s: float, now: float
    ) -> dict[int, list[ChunkRow]]:
        """Up to `count` turns said after each chunk (see `following_rows`)."""
        return await self.store.read(
            lambda conn: following_rows(conn, chunk_ids, owners, count, window_s, now)
        )

    async def last_turn(self, owner: str, now: float) -> ChunkRow | None:
        """What `owner` had stored last (the turn before the one being saved, in a
        conversation saved turn by turn)."""
        return await self.store.read(lambda conn: last_row(conn, owner, now))

    # knowledge files -------------------------------------------------------------------------
    async def knowledge_files(self) -> dict[str, str]:
        def op(conn: Conn) -> dict[str, str]:
            rows = conn.execute("SELECT path, sha256 FROM memory_knowledge_files")
            return {str(p): str(s) for p, s in rows.fetchall()}

        return await self.store.read(op)

    async def replace_knowledge(
        self, path: str, sha: str, text: str, chunks: list[NewChunk], model: str | None
    ) -> int:
        """Index a knowledge file as one shared item, replacing what it was before."""
        new = NewItem(SHARED, "knowledge", text, chunks, source=path, model=model)

        def op(conn: Conn) -> int:
            delete_items(conn, first_column(conn, _KNOWLEDGE_ITEM, (path,)))
            item_id = insert_item(conn, new, time.time())
            conn.execute(
                "INSERT OR REPLACE INTO memory_knowledge_files VALUES (?, ?, ?)",
                (path, sha, item_id),
            )
            return item_id

        return await self.store.write(op)

    async def remove_knowledge(self, path: str) -> bool:
        # the file's row goes with its item (ON DELETE CASCADE)
        return await self.store.write(
            lambda c: delete_items(c, first_column(c, _KNOWLEDGE_ITEM, (path,))) > 0
        )

    # identity links --------------------------------------------------------------------------
    async def put_link_code(self, code: str, person_id: str, expires_at: float) -> None:
        def op(conn: Conn) -> None:
            conn.execute(
                "DELETE FROM memory_link_codes WHERE person_id = ? OR expires_at <= ?",
                (person_id, time.time()),
            )
            conn.execute(
                "INSERT INTO memory_link_codes VALUES (?, ?, ?)", (code, person_id, expires_at)
            )

        await self.store.write(op)

    async def redeem_link_code(self, code: str, person_id: str, now: float) -> str | None:
        """Join `person_id` (all its identities and memory) to the person who made `code`.
        Returns that person, or None when the code is unknown or expired. Single use."""

        def op(conn: Conn) -> str | None:
            row = conn.execute(
                "SELECT person_id, expires_at FROM memory_link_codes WHERE code = ?", (code,)
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM memory_link_codes WHERE code = ?", (code,))
            target = str(row[0])
            if row[1] <= now:
                return None
            if target != person_id:
                conn.execute(
                    "UPDATE identities SET person_id = ? WHERE person_id = ?", (target, person_id)
                )
                reown(conn, person_id, target)
                _merge_jobs(conn, person_id, target, now)
                # a code the joined person made is now the remaining person's: it must not
                # join whoever redeems it to a person no account belongs to any more
                conn.execute(
                    "UPDATE memory_link_codes SET person_id = ? WHERE person_id = ?",
                    (target, person_id),
                )
            return target

        return await self.store.write(op)

    # sessions (for Markdown export) ----------------------------------------------------------
    async def session_transcript(
        self, session_id: int
    ) -> tuple[str, float, list[tuple[str, str, str, float]]] | None:
        """(session key, started at, [(role, speaker, content, at)]) of the user and assistant
        messages that were really said; tool messages are left out."""

        def op(conn: Conn) -> tuple[str, float, list[tuple[str, str, str, float]]] | None:
            head = conn.execute(
                "SELECT key, created_at FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            if head is None:
                return None
            rows = conn.execute(
                "SELECT t.role, COALESCE(NULLIF(i.display_name, ''), t.identity_key, ''),"
                " t.content, t.created_at FROM turns t LEFT JOIN identities i"
                " ON i.key = t.identity_key WHERE t.session_id = ? AND t.role IN"
                " ('user', 'assistant') AND (t.outcome IS NULL OR t.outcome = 'ok') ORDER BY t.id",
                (session_id,),
            ).fetchall()
            return str(head[0]), float(head[1]), [(r[0], r[1], r[2], r[3]) for r in rows]

        return await self.store.read(op)


def _merge_jobs(conn: Conn, joined: str, target: str, now: float) -> None:
    """Reminders and tasks follow the person. A person has one check-in: when both had one,
    the one that still runs is kept (a paused one waits for a conversation that refused
    it), and of two alike, the one of the person who made the code."""

    def has_checkin(person: str, statuses: str) -> bool:
        found = conn.execute(
            f"SELECT 1 FROM jobs WHERE person_id = ? AND kind = 'checkin' AND status IN {statuses}",
            (person,),
        ).fetchone()
        return found is not None

    if has_checkin(target, OPEN_SQL) and has_checkin(joined, OPEN_SQL):
        live_joined = has_checkin(joined, LIVE_SQL) and not has_checkin(target, LIVE_SQL)
        conn.execute(
            "UPDATE jobs SET status = 'cancelled', lease_until = NULL, updated_at = ?"
            f" WHERE person_id = ? AND kind = 'checkin' AND status IN {OPEN_SQL}",
            (now, target if live_joined else joined),
        )
    conn.execute("UPDATE jobs SET person_id = ? WHERE person_id = ?", (target, joined))
