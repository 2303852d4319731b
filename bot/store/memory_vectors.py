"""SQL for memory's vector side: the sqlite-vec table (one partition per owner), the
model it was built with, chunks still waiting for a vector, and the embedding cache.

The helpers here are also what bot/store/memory.py uses when items come and go, so a
chunk's vector follows its chunk in the same transaction.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from bot.store import sqlite

if TYPE_CHECKING:
    from bot.store import Conn, Store

VEC_TABLE = "memory_vec"
_BATCH = 500


def in_batches(ids: Sequence[Any]) -> Iterator[tuple[Sequence[Any], str]]:
    """`ids` in parts small enough for one statement, each with its "?,?,..." placeholders."""
    for start in range(0, len(ids), _BATCH):
        part = ids[start : start + _BATCH]
        yield part, ",".join("?" * len(part))


def first_column(conn: Conn, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    """The first column of every row."""
    return [r[0] for r in conn.execute(sql, params).fetchall()]


def pack_vector(vector: Sequence[float]) -> bytes:
    return struct.pack(f"{len(vector)}f", *vector)


def vectors_usable(conn: Conn) -> bool:
    """Whether `conn` can read and write the vector table: with sqlite-vec loaded on SQLite;
    always on PostgreSQL (a pgvector column, or bytes ranked in process)."""
    return bool(getattr(conn, "vectors_in_process", False)) or sqlite.vec_available()


def vec_exists(conn: Conn) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (VEC_TABLE,)).fetchone()
    return row is not None


def vec_model(conn: Conn) -> tuple[str, int] | None:
    row = conn.execute("SELECT model, dim FROM memory_embedding WHERE id = 1").fetchone()
    return (str(row[0]), int(row[1])) if row and vec_exists(conn) else None


def drop_vectors(conn: Conn, chunk_ids: Sequence[int]) -> None:
    if not chunk_ids or not vec_exists(conn):
        return
    if vectors_usable(conn):
        for cid in chunk_ids:
            conn.execute(f"DELETE FROM {VEC_TABLE} WHERE chunk_id = ?", (cid,))
    else:
        conn.executemany(
            "INSERT OR IGNORE INTO memory_vec_orphans VALUES (?)", [(c,) for c in chunk_ids]
        )


def put_vector(conn: Conn, chunk_id: int, owner: str, blob: bytes) -> None:
    conn.execute(
        f"INSERT INTO {VEC_TABLE} (chunk_id, owner, embedding) VALUES (?, ?, ?)",
        (chunk_id, owner, blob),
    )


def move_vectors(conn: Conn, chunk_ids: Sequence[int], owner: str) -> None:
    """Put the vectors of `chunk_ids` (whose chunks now belong to `owner`) in its partition."""
    if not chunk_ids or not vec_exists(conn):
        return
    if not vectors_usable(conn):  # re-embedded into the right partition later
        drop_vectors(conn, chunk_ids)
        for part, qs in in_batches(chunk_ids):
            conn.execute(f"UPDATE memory_chunks SET embedded = 0 WHERE id IN ({qs})", part)
        return
    # sqlite-vec cannot update a partition key: move each vector by delete and insert.
    for cid in chunk_ids:
        row = conn.execute(
            f"SELECT embedding FROM {VEC_TABLE} WHERE chunk_id = ?", (cid,)
        ).fetchone()
        if row is not None:
            conn.execute(f"DELETE FROM {VEC_TABLE} WHERE chunk_id = ?", (cid,))
            put_vector(conn, cid, owner, row[0])


class VectorRepo:
    """The vector index's tables (`MemoryRepo.vectors`)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def vector_model(self) -> tuple[str, int] | None:
        return await self.store.read(vec_model)

    async def reset_vectors(self, model: str, dim: int) -> None:
        """Recreate the vector table for `model` and mark every chunk for embedding."""

        def op(conn: Conn) -> None:
            conn.execute(f"DROP TABLE IF EXISTS {VEC_TABLE}")
            conn.execute(
                f"CREATE VIRTUAL TABLE {VEC_TABLE} USING vec0(chunk_id INTEGER PRIMARY KEY,"
                f" owner TEXT PARTITION KEY, embedding FLOAT[{int(dim)}] distance_metric=cosine,"
                " chunk_size=256)"
            )
            conn.execute(
                "INSERT OR REPLACE INTO memory_embedding VALUES (1, ?, ?, ?)",
                (model, dim, time.time()),
            )
            conn.execute("UPDATE memory_chunks SET embedded = 0 WHERE embedded != 0")
            conn.execute("DELETE FROM memory_vec_orphans")

        await self.store.write(op)

    async def purge_orphan_vectors(self) -> int:
        def op(conn: Conn) -> int:
            ids = first_column(conn, "SELECT chunk_id FROM memory_vec_orphans")
            conn.execute("DELETE FROM memory_vec_orphans")
            drop_vectors(conn, ids)
            return len(ids)

        return await self.store.write(op)

    async def pending_chunks(self, limit: int) -> list[tuple[int, str, str]]:
        """(chunk id, text, text hash) of chunks still waiting for a vector."""

        def op(conn: Conn) -> list[tuple[int, str, str]]:
            rows = conn.execute(
                "SELECT id, text, text_hash FROM memory_chunks WHERE embedded = 0 ORDER BY id"
                " LIMIT ?",
                (limit,),
            )
            return [(int(r[0]), str(r[1]), str(r[2])) for r in rows.fetchall()]

        return await self.store.read(op)

    async def count_pending_chunks(self) -> int:
        """How many chunks still wait for a vector (what a reindex has left to do)."""
        return await self.store.read(
            lambda conn: int(
                conn.execute("SELECT count(*) FROM memory_chunks WHERE embedded = 0").fetchone()[0]
            )
        )

    async def store_vectors(self, model: str, vectors: list[tuple[int, bytes | None]]) -> int:
        """Attach vectors to pending chunks, unless the index moved to another model since."""

        def op(conn: Conn) -> int:
            recorded = vec_model(conn)
            if recorded is None or recorded[0] != model:
                return 0
            done = 0
            for cid, blob in vectors:
                owner = first_column(
                    conn, "SELECT owner FROM memory_chunks WHERE id = ? AND embedded = 0", (cid,)
                )
                if not owner:
                    continue
                if blob is not None:
                    put_vector(conn, cid, owner[0], blob)
                conn.execute("UPDATE memory_chunks SET embedded = 1 WHERE id = ?", (cid,))
                done += 1
            return done

        return await self.store.write(op)

    async def cached_vectors(self, model: str, hashes: list[str]) -> dict[str, bytes]:
        def op(conn: Conn) -> dict[str, bytes]:
            out: dict[str, bytes] = {}
            for part, qs in in_batches(hashes):
                for h, blob in conn.execute(
                    "SELECT text_hash, vector FROM memory_embed_cache WHERE model = ?"
                    f" AND text_hash IN ({qs})",
                    (model, *part),
                ).fetchall():
                    out[h] = bytes(blob)
            return out

        return await self.store.read(op)

    async def cache_vectors(self, model: str, entries: list[tuple[str, bytes]]) -> None:
        await self.store.write(
            lambda c: c.executemany(
                "INSERT OR IGNORE INTO memory_embed_cache VALUES (?, ?, ?)",
                [(model, h, blob) for h, blob in entries],
            )
        )

    async def prune_cache(self) -> int:
        """Drop cached embeddings of texts no chunk holds any more."""
        sql = (
            "DELETE FROM memory_embed_cache WHERE text_hash NOT IN"
            " (SELECT text_hash FROM memory_chunks)"
        )
        return int(await self.store.write(lambda c: c.execute(sql).rowcount))
