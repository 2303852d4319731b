"""`decapod migrate --to postgresql://...`: copy a SQLite home's database into PostgreSQL.

Both databases are migrated first, so their tables match. Every row is copied with its own
keys (a row already there is left alone, so a second run copies only what is new), the
generated ids continue after the copied ones, and the row counts are compared at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.errors import StoreError

#: tables other tables refer to: copied first (parents before children)
_PARENTS_FIRST = ("sessions", "memory_items", "jobs")
#: SQLite's own tables and the FTS5/sqlite-vec ones (PostgreSQL keeps its index in a column)
_NOT_COPIED = ("_migrations", "sqlite_", "memory_fts", "memory_vec")
_BATCH = 1000


@dataclass(frozen=True, slots=True)
class TableCopy:
    table: str
    source_rows: int
    target_rows: int

    @property
    def complete(self) -> bool:
        # the target may hold more (it was in use before): every source row must be there
        return self.target_rows >= self.source_rows


def copy_sqlite_to_postgres(
    db_path: Path, conninfo: str, password: str | None = None
) -> list[TableCopy]:
    """Copy every table of the SQLite database at `db_path` into `conninfo`'s database;
    raises StoreError when a table's rows did not all arrive."""
    from bot.store import sqlite
    from bot.store.migration_runner import migrate
    from bot.store.postgres import connect, migrate_pg, prepare_vectors

    if not db_path.exists():
        raise StoreError(f"no SQLite database at {db_path}")
    src = sqlite.connect(db_path)
    dst = connect(conninfo, password)
    try:
        migrate(src)
        migrate_pg(dst)
        prepare_vectors(dst)  # vectors go into a pgvector column when the server has one
        copied = [_copy_table(src, dst, table) for table in _tables(src)]
        copied += _copy_vectors(src, dst)
    finally:
        src.close()
        dst.close()
    short = [c for c in copied if not c.complete]
    if short:
        names = ", ".join(f"{c.table} ({c.target_rows} of {c.source_rows})" for c in short)
        raise StoreError(f"copy incomplete: {names}")
    return copied


def _tables(src: Any) -> list[str]:
    names = [
        str(r[0])
        for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    ]
    names = [n for n in names if not n.startswith(_NOT_COPIED)]
    return sorted(names, key=lambda n: (n not in _PARENTS_FIRST, n))


def _copy_table(src: Any, dst: Any, table: str) -> TableCopy:
    columns = [str(r[1]) for r in src.execute(f"PRAGMA table_info({table})")]
    cols = ", ".join(_quoted(c) for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    insert = f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT DO NOTHING"
    rows = src.execute(f"SELECT {cols} FROM {table}")
    dst.execute("BEGIN")
    try:
        while batch := rows.fetchmany(_BATCH):
            with dst.raw.cursor() as cur:
                cur.executemany(insert, batch)
        if "id" in columns:
            _continue_ids(dst, table)
        dst.execute("COMMIT")
    except BaseException:
        dst.execute("ROLLBACK")
        raise
    return TableCopy(table, _count(src, table), _count(dst, table))


def _continue_ids(dst: Any, table: str) -> None:
    """Ids generated from now on follow the copied ones."""
    seq = dst.raw.execute("SELECT pg_get_serial_sequence(%s, 'id')", (table,)).fetchone()[0]
    if seq is not None:
        dst.raw.execute(
            f"SELECT setval(%s, GREATEST((SELECT max(id) FROM {table}), 1))",
            (seq,),
        )


def _copy_vectors(src: Any, dst: Any) -> list[TableCopy]:
    """The sqlite-vec table's vectors, into PostgreSQL's table of vectors (made as
    `reset_vectors` makes it)."""
    from bot.store import sqlite
    from bot.store.memory_vectors import VEC_TABLE, vec_exists

    if not vec_exists(src):
        return []
    if not sqlite.vec_available():
        raise StoreError("the database has memory vectors but sqlite-vec is not installed")
    dim = src.execute("SELECT dim FROM memory_embedding WHERE id = 1").fetchone()
    dst.execute("BEGIN")
    try:
        if not vec_exists(dst):
            dst.execute(
                f"CREATE VIRTUAL TABLE {VEC_TABLE} USING vec0(chunk_id INTEGER PRIMARY KEY,"
                f" owner TEXT PARTITION KEY, embedding FLOAT[{int(dim[0]) if dim else 1}])"
            )
        rows = src.execute(f"SELECT chunk_id, owner, embedding FROM {VEC_TABLE}")
        insert = f"INSERT OR IGNORE INTO {VEC_TABLE} VALUES (?, ?, ?)"
        while batch := rows.fetchmany(_BATCH):
            dst.executemany(insert, [(r[0], r[1], bytes(r[2])) for r in batch])
        dst.execute("COMMIT")
    except BaseException:
        dst.execute("ROLLBACK")
        raise
    return [TableCopy(VEC_TABLE, _count(src, VEC_TABLE), _count(dst, VEC_TABLE))]


def _count(conn: Any, table: str) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _quoted(column: str) -> str:
    return f'"{column}"'
