"""The runner of the schema migrations (bot/store/migrations.py holds them and their registry):
the check that refuses a database a newer version migrated, and `migrate`, which applies the
pending ones on SQLite (PostgreSQL's is in postgres.py)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from bot.errors import DatabaseTooNew
from bot.store.migrations import MIGRATIONS

if TYPE_CHECKING:
    from bot.progress import ProgressSink

log = logging.getLogger(__name__)

#: PostgreSQL: the advisory lock every migration transaction takes: replicas starting
#: together queue on it, and each migration is applied by exactly one of them. Here, not in
#: postgres.py, so that the cluster's leader lock can be derived from it without importing
#: the PostgreSQL store into a gateway on SQLite
MIGRATION_LOCK = 0x6465636170_6F64  # "decapod"

#: How long a process waits for the write lock another process holds while it upgrades the
#: schema: the connection's busy timeout (5 s) covers one statement, not a whole upgrade
UPGRADE_WAIT_S = 60.0


def refuse_newer(done: set[str], where: str) -> None:
    """Raise DatabaseTooNew when `done` names a migration this version does not have."""
    unknown = sorted(done - MIGRATIONS.keys())
    if unknown:
        raise DatabaseTooNew(where, unknown)


def migrate(conn: Any, progress: ProgressSink | None = None, where: str = "") -> list[str]:
    """Apply the pending migrations; returns the names applied. Safe to run concurrently.

    All of them run in one transaction: a new home's whole schema is one commit (14 were
    one each, their BEGIN, check, record and COMMIT apiece), and a stop or a failure part
    way leaves the database at the version it had, never between two. The pending ones are
    read again once the write lock is held, so a process that applied them meanwhile is
    seen. A database a newer version migrated is refused (DatabaseTooNew) before anything
    runs."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    if not _pending(conn, where):  # the usual start: nothing to do, no write lock taken
        return []
    _begin_write(conn, where)
    try:
        todo = _pending(conn, where)  # under the lock: another process may have run some
        if progress is not None and todo:
            progress.begin(len(todo))
        for name in todo:
            MIGRATIONS[name](conn)
            conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
            if progress is not None:
                progress.advance()
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already (a full disk, an I/O error): a ROLLBACK then
        # would raise "no transaction is active" in place of the error that says why
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return todo


def _begin_write(conn: Any, where: str) -> None:
    """BEGIN IMMEDIATE, waiting up to UPGRADE_WAIT_S for a process that is upgrading."""
    from bot.store.sqlite import busy

    # each try that finds the lock held (SQLITE_BUSY) has waited the busy timeout first:
    # one is started only while it can end before the deadline
    each_try_s = conn.execute("PRAGMA busy_timeout").fetchone()[0] / 1000
    deadline = time.monotonic() + UPGRADE_WAIT_S
    waited = False
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except Exception as exc:
            if not busy(exc) or time.monotonic() + each_try_s > deadline:
                raise
            if not waited:
                log.info(
                    "%s: waiting for another process's schema upgrade (up to %.0f s)",
                    where or "the database",
                    UPGRADE_WAIT_S,
                )
                waited = True
            # SQLITE_BUSY came after the busy timeout's wait; SQLITE_LOCKED comes back at
            # once, without it: a short pause, so that one is not a spin
            time.sleep(0.01)


def _pending(conn: Any, where: str) -> list[str]:
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    refuse_newer(done, where)
    return [name for name in sorted(MIGRATIONS) if name not in done]
