"""Chunk rows as searches hand them on: what either backend's keyword and vector search
found, and the turn said after a hit. Plain SQL, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.store.memory_vectors import in_batches

if TYPE_CHECKING:
    from bot.store import Conn


@dataclass(frozen=True, slots=True)
class ChunkRow:
    chunk_id: int
    item_id: int
    owner: str
    kind: str
    text: str
    source: str
    created_at: float
    updated_at: float
    #: what the text depends on (the turn before, the day it was said)
    context: str = ""


@dataclass(frozen=True, slots=True)
class SearchRows:
    keyword: list[int]  # chunk ids, best first
    vector: list[int]  # chunk ids, nearest first
    rows: dict[int, ChunkRow]
    #: BM25 relevance (higher is better) and cosine similarity of the listed chunks
    keyword_score: dict[int, float] = field(default_factory=dict)
    vector_score: dict[int, float] = field(default_factory=dict)


def search_rows(
    conn: Conn,
    keyword: list[int],
    keyword_score: dict[int, float],
    closest: list[tuple[float, int]],
    owners: list[str],
    now: float,
) -> SearchRows:
    """The hits of both lists that still belong to `owners` and have not expired, with their
    rows: what either backend's search hands to the fusion."""
    by_distance = [cid for _, cid in closest]
    vector_score = {cid: 1.0 - float(d) for d, cid in closest}
    rows = chunk_rows(conn, list(dict.fromkeys(keyword + by_distance)), owners, now)
    return SearchRows(
        [c for c in keyword if c in rows],
        [c for c in by_distance if c in rows],
        rows,
        {c: v for c, v in keyword_score.items() if c in rows},
        {c: v for c, v in vector_score.items() if c in rows},
    )


def chunk_rows(conn: Conn, ids: list[int], owners: list[str], now: float) -> dict[int, ChunkRow]:
    """The rows of the chunks `ids` that belong to `owners` and have not expired."""
    rows: dict[int, ChunkRow] = {}
    oqs = ",".join("?" * len(owners))
    for part, qs in in_batches(ids):
        for r in conn.execute(
            "SELECT c.id, c.item_id, c.owner, i.kind, c.text, i.source, i.created_at,"
            " i.updated_at, c.context FROM memory_chunks c JOIN memory_items i ON i.id = c.item_id"
            f" WHERE c.id IN ({qs}) AND c.owner IN ({oqs}) AND i.owner IN ({oqs})"
            " AND (i.expires_at IS NULL OR i.expires_at > ?)",
            (*part, *owners, *owners, now),
        ).fetchall():
            rows[r[0]] = ChunkRow(*r)
    return rows


def next_rows(
    conn: Conn, chunk_ids: list[int], owners: list[str], window_s: float, now: float
) -> dict[int, ChunkRow]:
    """For each chunk, the next chunk of the same owner when said within `window_s` of it:
    the turn after it in a conversation (or the next chunk of one long item)."""
    following = following_rows(conn, chunk_ids, owners, 1, window_s, now)
    return {cid: rows[0] for cid, rows in following.items()}


def following_rows(
    conn: Conn, chunk_ids: list[int], owners: list[str], count: int, window_s: float, now: float
) -> dict[int, list[ChunkRow]]:
    """For each chunk, up to `count` chunks of the same owner stored after it, in order, each
    said within `window_s` of the one before: the turns that followed it in a conversation."""
    found = chunk_rows(conn, chunk_ids, owners, now)
    out: dict[int, list[ChunkRow]] = {}
    for cid, row in found.items():
        rows: list[ChunkRow] = []
        last = row
        while len(rows) < count:
            # the owner index holds the rowid: this is one index seek, not a scan
            other = conn.execute(
                "SELECT min(id) FROM memory_chunks WHERE owner = ? AND id > ?",
                (row.owner, last.chunk_id),
            ).fetchone()
            if other is None or other[0] is None:
                break
            after = chunk_rows(conn, [int(other[0])], owners, now).get(int(other[0]))
            if after is None or abs(after.created_at - last.created_at) > window_s:
                break
            rows.append(after)
            last = after
        if rows:
            out[cid] = rows
    return out


def last_row(conn: Conn, owner: str, now: float) -> ChunkRow | None:
    """The chunk of `owner` stored last, or None."""
    # the owner index holds the rowid: one index seek, however many items the owner has
    last = conn.execute("SELECT max(id) FROM memory_chunks WHERE owner = ?", (owner,)).fetchone()
    if last is None or last[0] is None:
        return None
    return chunk_rows(conn, [int(last[0])], [owner], now).get(int(last[0]))
