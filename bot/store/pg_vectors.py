"""Memory's vectors on PostgreSQL with the pgvector extension: a `vector(d)` column with an
HNSW index (cosine), ranked in SQL per person. Without the extension, vectors are float32
bytes ranked in process (bot/store/pg_memory.py); `VectorSupport` says which one a database
uses and why.

The extension is enabled (when the server has it and the role may create it) under the
migration lock at every start, and a table of bytes left from before is converted then, so
"the extension is there" and "the vector table has a vector column" always go together.

A filtered HNSW search walks the graph for `hnsw.ef_search` candidates of everyone and keeps
the person's: for a person holding a small share of all vectors it can return fewer than k
rows, or none (pgvector 0.6 has no iterative scan). So `nearest` asks the graph only when the
person's share is large enough for a raised ef_search to find k of theirs, and falls back to
an exact scan of that person's vectors whenever the walk comes back short; everyone else's
nearest are found by that exact scan (their vectors, found through the owner index).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.store.postgres import PgConnection

#: pgvector cannot index more dimensions than this with HNSW (the column itself takes more)
HNSW_MAX_DIM = 2000
#: pgvector's largest hnsw.ef_search
EF_SEARCH_MAX = 1000
#: the walk must meet this many times k of the person's vectors, on average, to be asked
OVERFETCH = 4
#: a person with at most this many vectors is always scanned exactly: at 256 dimensions that
#: is as fast as a walk with the ef_search their share needs, or faster (docs/performance.md,
#: "Memory on PostgreSQL")
EXACT_UP_TO = 10_000
#: counting a person's vectors stops here: beyond it the share is only used to size ef_search
_COUNT_CAP = 50_000


@dataclass(frozen=True, slots=True)
class VectorSupport:
    #: the pgvector version in use, or None: vectors ranked in process
    pgvector: str | None = None
    #: why pgvector is not used (empty when it is)
    reason: str = ""

    def describe(self) -> str:
        """What `decapod doctor` says of memory's vector search on this database."""
        if self.pgvector is not None:
            return f"pgvector {self.pgvector} HNSW (cosine, ranked in SQL)"
        return f"in-process fallback (vectors stored as bytea; {self.reason})"


def enable_pgvector(conn: PgConnection) -> VectorSupport:
    """Inside the migration transaction: the `vector` extension, created if the server has
    it and the role may; a vector table of bytes converted to a vector column."""
    raw = conn.raw
    installed = raw.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    row = installed.fetchone()
    if row is None:
        available = raw.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
        if available is None:
            return VectorSupport(reason="the server has no pgvector extension")
        raw.execute("SAVEPOINT pgvector")
        try:
            raw.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except Exception as exc:
            raw.execute("ROLLBACK TO SAVEPOINT pgvector")
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return VectorSupport(
                reason=f"CREATE EXTENSION vector failed: {first} (a superuser can run it once)"
            )
        raw.execute("RELEASE SAVEPOINT pgvector")
        row = raw.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    conn.pgvector = True
    _convert_byte_table(conn)
    return VectorSupport(pgvector=str(row[0]))


def _convert_byte_table(conn: PgConnection) -> None:
    """A vector table made before the extension was there (bytes): the same vectors, in a
    vector column with its index."""
    from bot.store.memory_vectors import VEC_TABLE

    kind = conn.raw.execute(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = %s AND column_name = 'embedding'",
        (VEC_TABLE,),
    ).fetchone()
    if kind is None or kind[0] != "bytea":
        return
    dim = conn.raw.execute("SELECT dim FROM memory_embedding WHERE id = 1").fetchone()
    rows = conn.raw.execute(f"SELECT chunk_id, owner, embedding FROM {VEC_TABLE}").fetchall()
    conn.raw.execute(f"DROP TABLE {VEC_TABLE}")
    create_vector_table(conn, VEC_TABLE, int(dim[0]) if dim else 1)
    with conn.raw.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {VEC_TABLE} VALUES (%s, %s, %s)",
            [(r[0], r[1], vector_text(bytes(r[2]))) for r in rows],
        )


def create_vector_table(conn: PgConnection, table: str, dim: int) -> None:
    """The vector table for `dim` dimensions: a vector column, the owner index the per-person
    scans use, and the HNSW index (cosine) when pgvector can index that many dimensions."""
    conn.raw.execute(
        f"CREATE TABLE {table} (chunk_id BIGINT PRIMARY KEY, owner TEXT NOT NULL,"
        f" embedding vector({int(dim)}) NOT NULL)"
    )
    conn.raw.execute(f"CREATE INDEX {table}_owner ON {table}(owner)")
    if dim <= HNSW_MAX_DIM:
        conn.raw.execute(hnsw_index(table))


def hnsw_index(table: str) -> str:
    """The statement that makes `table`'s HNSW index (cosine)."""
    return f"CREATE INDEX {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops)"


def vector_text(blob: bytes | memoryview | str) -> str:
    """float32 bytes (what the repositories hold) as pgvector's text form, `[x,y,...]`; a
    vector read back from the column is that text already. Each float's repr reads back as
    the same float32."""
    if isinstance(blob, str):
        return blob
    return "[" + ",".join(map(repr, array("f", bytes(blob)).tolist())) + "]"


def vector_params(params: Any) -> Any:
    """A statement's parameters with float32 bytes as pgvector text (the statements on the
    vector table take no other bytes)."""
    if isinstance(params, dict):
        return {k: vector_text(v) if _is_blob(v) else v for k, v in params.items()}
    return tuple(vector_text(v) if _is_blob(v) else v for v in params)


def _is_blob(value: Any) -> bool:
    return isinstance(value, bytes | bytearray | memoryview)


def nearest(
    conn: PgConnection, table: str, vector: bytes, owners: list[str], limit: int
) -> list[tuple[float, int]]:
    """(cosine distance, chunk id) of the `limit` nearest vectors among `owners`', each
    owner's k nearest found on its own (see the module's docstring for how)."""
    query = vector_text(vector)
    total, held_by = _holdings(conn, table, owners)
    best: list[tuple[float, int]] = []
    for owner in owners:
        held = held_by.get(owner, 0)
        if held == 0:
            continue
        want = min(limit, held)
        rows = None
        ef = math.ceil(OVERFETCH * want * max(total, held) / held)
        if held > EXACT_UP_TO and ef <= EF_SEARCH_MAX:
            rows = _walk(conn, table, query, owner, want, max(ef, 40))
            if len(rows) < want:  # the walk met too few of theirs: scan them exactly
                rows = None
        if rows is None:
            rows = _scan(conn, table, query, owner, want)
        best += [(float(d), int(c)) for d, c in rows]
    return sorted(best)[:limit]


def _holdings(conn: PgConnection, table: str, owners: list[str]) -> tuple[int, dict[str, int]]:
    """The planner's row count of `table` (no scan; 0 before its first ANALYZE), and how many
    vectors each owner holds (counted up to _COUNT_CAP), in one round trip."""
    rows = conn.raw.execute(
        "SELECT o, (SELECT count(*) FROM (SELECT 1 FROM"
        f" {table} WHERE owner = o LIMIT %s) AS s), (SELECT reltuples FROM pg_class"
        " WHERE oid = to_regclass(%s)) FROM unnest(%s::text[]) AS o",
        (_COUNT_CAP, table, owners),
    ).fetchall()
    total = max([0, *(int(r[2] or 0) for r in rows)])
    return total, {str(r[0]): int(r[1]) for r in rows}


def _walk(conn: PgConnection, table: str, query: str, owner: str, k: int, ef: int) -> list[Any]:
    # session-wide, as every walk sets its own before it runs
    conn.raw.execute("SELECT set_config('hnsw.ef_search', %s, false)", (str(ef),))
    return list(
        conn.raw.execute(
            f"SELECT embedding <=> %s::vector AS d, chunk_id FROM {table} WHERE owner = %s"
            " ORDER BY embedding <=> %s::vector LIMIT %s",
            (query, owner, query, k),
        ).fetchall()
    )


def _scan(conn: PgConnection, table: str, query: str, owner: str, k: int) -> list[Any]:
    # MATERIALIZED: the distances of this owner's rows (found through the owner index), never
    # an index walk that could keep other people's nearest and drop this owner's
    return list(
        conn.raw.execute(
            f"WITH mine AS MATERIALIZED (SELECT embedding <=> %s::vector AS d, chunk_id"
            f" FROM {table} WHERE owner = %s) SELECT d, chunk_id FROM mine"
            " ORDER BY d, chunk_id LIMIT %s",
            (query, owner, k),
        ).fetchall()
    )
