"""PostgreSQL connections that speak the repositories' SQL, and the migrations run on them.

A `PgConnection` looks like the sqlite3 connection the repositories are written against
(`execute`, `executemany`, cursors with `fetchone`/`fetchall`/`rowcount`/`lastrowid`,
`in_transaction`); each statement is translated by bot/store/pg_dialect.py. psycopg is
imported only when a PostgreSQL store is opened.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from bot.errors import StorageUnavailable
from bot.store.migration_runner import MIGRATION_LOCK, refuse_newer
from bot.store.migrations import MIGRATIONS, Migration
from bot.store.pg_dialect import Translated, translate

if TYPE_CHECKING:
    from bot.progress import ProgressSink
    from bot.store.pg_vectors import VectorSupport


class PgCursor:
    def __init__(self, cur: Any, lastrowid: int | None) -> None:
        self._cur = cur
        self.lastrowid = lastrowid

    @property
    def description(self) -> Any:
        return self._cur.description

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)

    def fetchone(self) -> Any:
        return self._cur.fetchone() if self._cur.description is not None else None

    def fetchall(self) -> list[Any]:
        return list(self._cur.fetchall()) if self._cur.description is not None else []

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgConnection:
    """A psycopg connection in autocommit mode (transactions are explicit, as on SQLite)."""

    #: memory's vector table needs no sqlite-vec here: a pgvector column, or bytes ranked in
    #: process
    vectors_in_process = True

    def __init__(self, raw: Any, pgvector: bool = False) -> None:
        self.raw = raw
        #: the database has the pgvector extension: the vector table has a vector column
        self.pgvector = pgvector

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> PgCursor:
        stmt = translate(sql)
        if self.pgvector and stmt.vector_table is not None:
            from bot.store.pg_vectors import create_vector_table

            create_vector_table(self, *stmt.vector_table)
            return PgCursor(self.raw.cursor(), None)
        # always with parameters, even none: the translation doubled every literal `%`
        cur = self.raw.execute(stmt.sql, self._bind(stmt, params))
        for follow in stmt.then:
            self.raw.execute(follow)
        lastrowid = None
        if stmt.returns_id:
            row = cur.fetchone()
            lastrowid = None if row is None else int(row[0])
        return PgCursor(cur, lastrowid)

    def executemany(self, sql: str, seq: Any) -> PgCursor:
        stmt = translate(sql)
        cur = self.raw.cursor()
        cur.executemany(stmt.sql, [self._bind(stmt, p) for p in seq])
        return PgCursor(cur, None)

    def _bind(self, stmt: Translated, params: Any) -> Any:
        if self.pgvector and stmt.on_vectors:
            from bot.store.pg_vectors import vector_params

            return vector_params(params)
        return _params(params)

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return bool(self.raw.info.transaction_status != TransactionStatus.IDLE)

    @property
    def broken(self) -> bool:
        return bool(self.raw.broken or self.raw.closed)

    def close(self) -> None:
        self.raw.close()


def _params(params: Any) -> Any:
    """SQLite takes a list where psycopg wants a tuple or a dict; both take the same values.
    PostgreSQL's text cannot hold NUL, which SQLite's can (a pasted binary, a command's
    output): it is written as U+FFFD instead of failing the write, and the turn with it."""
    if isinstance(params, dict):
        if any(isinstance(v, str) and "\x00" in v for v in params.values()):
            return {k: _without_nul(v) for k, v in params.items()}
        return params
    values = tuple(params)
    if any(isinstance(v, str) and "\x00" in v for v in values):
        return tuple(_without_nul(v) for v in values)
    return values


def _without_nul(value: Any) -> Any:
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def configure(raw: Any) -> None:
    """What every connection needs before use: SUM and AVG come back as numbers, not
    Decimals (SQLite gives int or float; the repositories expect those)."""
    from psycopg.adapt import Loader

    class NumericLoader(Loader):
        def load(self, data: Any) -> Any:
            value = bytes(data).decode()
            return int(value) if value.lstrip("-").isdigit() else float(value)

    raw.adapters.register_loader("numeric", NumericLoader)


#: SQLSTATEs of a server that refuses writes for a while -> the reason said
_REFUSALS = {
    "53100": "full",  # disk_full
    "53200": "full",  # out_of_memory
    "25006": "read-only",  # read_only_sql_transaction (a standby, or made read-only)
    "55P03": "busy",  # lock_not_available (lock_timeout)
    "53300": "busy",  # too_many_connections
    "57P03": "busy",  # cannot_connect_now (starting up, shutting down)
    "40P01": "busy",  # deadlock_detected (the server ended one of two writes: try again)
    "40001": "busy",  # serialization_failure
    "57P01": "failing",  # admin_shutdown
    "58030": "failing",  # io_error
}


def pg_refused(exc: BaseException, label: str) -> StorageUnavailable | None:
    """The refusal behind `exc` (its causes included) as StorageUnavailable, as SQLite's
    store says a full, read-only or locked disk. A server out of reach is said by the store
    itself ("unreachable"), which alone knows that its connection broke: an error without a
    SQLSTATE on a live connection (a client-side refusal) is no reason to wait."""
    from bot.store import refusal_in

    def judge(seen: BaseException) -> StorageUnavailable | None:
        reason = _REFUSALS.get(getattr(seen, "sqlstate", None) or "")
        return None if reason is None else StorageUnavailable(reason, label)

    return refusal_in(exc, judge)


def connect(conninfo: str, password: str | None, pgvector: bool = False) -> PgConnection:
    import psycopg

    kwargs: dict[str, Any] = {"autocommit": True}
    if password is not None:
        kwargs["password"] = password
    raw = psycopg.connect(conninfo, **kwargs)
    configure(raw)
    return PgConnection(raw, pgvector)


_CREATE_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS _migrations "
    "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
)


def migrate_pg(
    conn: PgConnection, progress: ProgressSink | None = None, label: str = ""
) -> list[str]:
    """Apply pending migrations, each in its own transaction under the migration lock; returns
    the names this process applied (none when another replica got there first)."""
    conn.execute("BEGIN")
    try:
        conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.raw.execute(_CREATE_MIGRATIONS)
        done = {str(r[0]) for r in conn.execute("SELECT name FROM _migrations").fetchall()}
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    refuse_newer(done, label)
    todo = sorted(MIGRATIONS)
    if progress is not None:
        progress.begin(len(todo))
    applied: list[str] = []
    for name in todo:
        conn.execute("BEGIN")
        try:
            conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.raw.execute(_CREATE_MIGRATIONS)
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                conn.execute("ROLLBACK")
            else:
                PG_MIGRATIONS.get(name, MIGRATIONS[name])(conn)
                conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
                conn.execute("COMMIT")
                applied.append(name)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if progress is not None:
            progress.advance()
    return applied


def prepare_vectors(conn: PgConnection) -> VectorSupport:
    """After the migrations, under their lock: pgvector for memory's vectors when the server
    has it (bot/store/pg_vectors.py); `conn` then writes vectors in its form."""
    from bot.store.pg_vectors import enable_pgvector

    conn.execute("BEGIN")
    try:
        conn.raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        support = enable_pgvector(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.pgvector = False
        raise
    return support


def _m001_core(conn: Any) -> None:
    from bot.store.migrations import m001_core

    m001_core(conn)
    # SQLite's implicit rowid orders deliveries received in the same instant
    conn.raw.execute("ALTER TABLE inbound ADD COLUMN rowid BIGINT GENERATED ALWAYS AS IDENTITY")


def _m003_memory(conn: Any) -> None:
    from bot.store.migrations import _M003

    # the plain tables translate; FTS5 and its triggers have a tsvector column instead (m006)
    for stmt in _M003:
        if stmt.lstrip().upper().startswith(("CREATE TABLE", "CREATE INDEX")):
            conn.execute(stmt)


def _m006_memory_context(conn: Any) -> None:
    conn.execute("ALTER TABLE memory_chunks ADD COLUMN context TEXT NOT NULL DEFAULT ''")
    # the text weighs above its context, as the FTS5 rank does on SQLite; owner is filtered
    # by its own column, so it needs no token of its own
    conn.raw.execute(
        "ALTER TABLE memory_chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS ("
        "setweight(to_tsvector('english', text), 'A') || "
        "setweight(to_tsvector('english', context), 'C')) STORED"
    )
    conn.raw.execute("CREATE INDEX memory_chunks_tsv ON memory_chunks USING GIN (tsv)")


#: migrations whose SQLite form has no translation (virtual tables, triggers)
PG_MIGRATIONS: dict[str, Migration] = {
    "m001_core": _m001_core,
    "m003_memory": _m003_memory,
    "m006_memory_context": _m006_memory_context,
}
