"""Memory's items as rows: what is stored (NewItem and its NewChunks), what is read back
(ItemRow), and the SQL that writes them for bot/store/memory.py: an item inserted with its
chunks and vectors, items deleted without a trace, a person's items moved to another when
their identities are linked.

Inserting and moving items take the owner they act for and filter on it in SQL. Reading
(`item_rows`) goes by the caller's condition, and `delete_items` deletes the ids it is given:
its callers choose them (a person's own items, the expired ones, a knowledge file's).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.messages import GROUP_PLACE_PREFIX
from bot.store.memory_vectors import (
    drop_vectors,
    first_column,
    in_batches,
    move_vectors,
    put_vector,
    vec_model,
    vectors_usable,
)

if TYPE_CHECKING:
    from bot.store import Conn


_ITEM_COLS = "id, owner, kind, text, source, created_at, updated_at, expires_at"

#: between a person and the group in an owner of group-saved items ("telegram:123@tg:group:-5")
PLACE_MARK = "@"
#: an owner saved in a group: the person, PLACE_MARK, then the group's place
#: `<channel>:<group|channel>:<chat>` (bot/memory/tools.py group_place). The channel part has
#: no '@' or ':', and the person part is the shortest that leaves such a place, so a person id
#: holding '@' ("console:bob@corp") is a private owner, never another person's group
_GROUP_OWNER = re.compile(r"(.+?)" + PLACE_MARK + f"({GROUP_PLACE_PREFIX}.+)", re.DOTALL)
# No person id holds `@<channel>:group:` (bot/messages.py `person_id_problem`): so an owner
# holding it is a group's, and the first one ends the person, whatever '@' the id has.


def place_owner(person_id: str, place: str) -> str:
    """The owner of what `person_id` saves in `place`: the person in a private place (""),
    else the person in that group, whose items no other place sees."""
    return f"{person_id}{PLACE_MARK}{place}" if place else person_id


def split_owner(owner: str) -> tuple[str, str]:
    """(person, place) of an owner: place "" for a person's private items."""
    found = _GROUP_OWNER.fullmatch(owner)
    return (found[1], found[2]) if found else (owner, "")


def owners_of(conn: Conn, person_id: str) -> list[str]:
    """`person_id` and the owner of each group they saved in, the person's own first."""
    prefixed = first_column(
        conn,
        "SELECT DISTINCT owner FROM memory_items WHERE substr(owner, 1, ?) = ? ORDER BY owner",
        (len(person_id) + 1, person_id + PLACE_MARK),
    )
    return [person_id] + [o for o in prefixed if split_owner(o)[0] == person_id]


def owner_tag(owner: str) -> str:
    """One FTS5 token standing for an owner, so a MATCH is scoped to owners inside the index.
    Letters then digits: no tokenizer splits it and no stemmer alters it."""
    return "o" + str(int(hashlib.sha256(owner.encode("utf-8")).hexdigest()[:15], 16))


@dataclass(frozen=True, slots=True)
class NewChunk:
    seq: int
    text: str
    text_hash: str
    #: float32 bytes in the space of the model passed alongside; None = nothing to store
    vector: bytes | None = None
    #: what the text depends on (the turn it answers, when it was said): searched, not shown
    context: str = ""


@dataclass(frozen=True, slots=True)
class NewItem:
    owner: str
    kind: str
    text: str
    chunks: list[NewChunk]
    source: str = ""
    #: the model that made the chunks' vectors; None = not embedded yet
    model: str | None = None
    expires_at: float | None = None
    #: when it was said (default: now); also what recency and the recalled date go by
    at: float | None = None


@dataclass(frozen=True, slots=True)
class ItemRow:
    id: int
    owner: str
    kind: str
    text: str
    source: str
    created_at: float
    updated_at: float
    expires_at: float | None


def delete_items(conn: Conn, item_ids: Sequence[int]) -> int:
    """Delete items with their chunks, FTS entries, vectors and cached embeddings; zero
    the freed cells and rewrite the FTS index so no stale segment keeps the words."""
    if not item_ids:
        return 0
    secure = conn.execute("PRAGMA secure_delete").fetchone()[0]
    conn.execute("PRAGMA secure_delete = 1")
    try:
        deleted = 0
        for part, qs in in_batches(item_ids):
            chunks = conn.execute(
                f"SELECT id, text_hash FROM memory_chunks WHERE item_id IN ({qs})", part
            ).fetchall()
            drop_vectors(conn, [c[0] for c in chunks])
            deleted += conn.execute(f"DELETE FROM memory_items WHERE id IN ({qs})", part).rowcount
            hashes = sorted({c[1] for c in chunks})
            for hpart, hqs in in_batches(hashes):
                conn.execute(
                    f"DELETE FROM memory_embed_cache WHERE text_hash IN ({hqs}) AND text_hash "
                    f"NOT IN (SELECT text_hash FROM memory_chunks WHERE text_hash IN ({hqs}))",
                    (*hpart, *hpart),
                )
        conn.execute("INSERT INTO memory_fts(memory_fts) VALUES ('optimize')")
        return deleted
    finally:
        conn.execute(f"PRAGMA secure_delete = {int(secure)}")


def insert_item(conn: Conn, item: NewItem, now: float) -> int:
    digest = hashlib.sha256(item.text.encode()).hexdigest()
    now = now if item.at is None else item.at
    item_id = int(
        conn.execute(
            "INSERT INTO memory_items (owner, kind, text, text_hash, source, created_at,"
            " updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (item.owner, item.kind, item.text, digest, item.source, now, now, item.expires_at),
        ).lastrowid
    )
    recorded = vec_model(conn)
    in_space = bool(recorded and recorded[0] == item.model and vectors_usable(conn))
    tag = owner_tag(item.owner)
    for ch in item.chunks:
        cid = conn.execute(
            "INSERT INTO memory_chunks (item_id, owner, owner_tag, seq, text, text_hash, embedded,"
            " context) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (item_id, item.owner, tag, ch.seq, ch.text, ch.text_hash, int(in_space), ch.context),
        ).lastrowid
        if in_space and ch.vector is not None:
            put_vector(conn, cid, item.owner, ch.vector)
    return item_id


def item_rows(conn: Conn, where: str, params: Sequence[Any]) -> list[ItemRow]:
    rows = conn.execute(f"SELECT {_ITEM_COLS} FROM memory_items WHERE {where}", params)
    return [ItemRow(*r) for r in rows.fetchall()]


def reown(conn: Conn, source: str, target: str) -> None:
    """Move every item of `source` to `target`: rows, FTS owner tags, vector partitions; and
    what `source` saved in each group (owner `source@group`) to `target@group`."""
    for owner in owners_of(conn, source):
        _reown_one(conn, owner, place_owner(target, split_owner(owner)[1]))


def _reown_one(conn: Conn, source: str, target: str) -> None:
    _drop_twins(conn, source, target)
    conn.execute("UPDATE memory_items SET owner = ? WHERE owner = ?", (target, source))
    ids = first_column(
        conn, "SELECT id FROM memory_chunks WHERE owner = ? AND embedded = 1", (source,)
    )
    conn.execute(
        "UPDATE memory_chunks SET owner = ?, owner_tag = ? WHERE owner = ?",
        (target, owner_tag(target), source),
    )
    move_vectors(conn, ids, target)


def _drop_twins(conn: Conn, source: str, target: str) -> None:
    """Delete the items of `source` whose text `target` already holds (`add` never stores one
    text twice for a person); the copy kept takes the later time and the longer life."""
    twins = conn.execute(
        "SELECT s.id, s.updated_at, s.expires_at, t.id, t.updated_at, t.expires_at"
        " FROM memory_items s JOIN memory_items t ON t.owner = ? AND t.text_hash = s.text_hash"
        " AND t.text = s.text WHERE s.owner = ?",
        (target, source),
    ).fetchall()
    for _, s_updated, s_expires, t_id, t_updated, t_expires in twins:
        expires = None if s_expires is None or t_expires is None else max(s_expires, t_expires)
        conn.execute(
            "UPDATE memory_items SET updated_at = ?, expires_at = ? WHERE id = ?",
            (max(s_updated, t_updated), expires, t_id),
        )
    delete_items(conn, sorted({row[0] for row in twins}))
