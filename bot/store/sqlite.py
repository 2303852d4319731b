"""Which SQLite to use, how every connection is opened, and how its errors read (a full,
read-only, locked or failing disk; a damaged file).

The standard library's sqlite3 is used when it can load extensions (needed for sqlite-vec);
Python builds without `enable_load_extension` fall back to the bundled pysqlite3-binary.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from bot.errors import DatabaseDamaged, StorageUnavailable, error_chain

BUSY_TIMEOUT_MS = 5000
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


@dataclass(frozen=True, slots=True)
class SqliteInfo:
    module: str  # "sqlite3" or "pysqlite3"
    sqlite_version: str
    can_load_extensions: bool
    fts5: bool
    vec_version: str | None  # None when sqlite-vec is not available
    vec_error: str | None = None


@functools.cache
def sqlite_module() -> ModuleType:
    import sqlite3

    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    try:
        return importlib.import_module("pysqlite3.dbapi2")
    except ImportError:
        return sqlite3


def _load_vec(conn: Any) -> str | None:
    """Load sqlite-vec into `conn`; returns an error string, or None on success."""
    if not hasattr(conn, "enable_load_extension"):
        return "this Python's sqlite3 cannot load extensions; install pysqlite3-binary"
    path = _vec_library()
    if path is None:
        return "sqlite-vec is not installed (pip install 'decapod[memory]')"
    try:
        conn.enable_load_extension(True)
        conn.load_extension(path)
        conn.enable_load_extension(False)
    except Exception as exc:
        return f"sqlite-vec failed to load: {exc}"
    return None


@functools.cache
def _vec_library() -> str | None:
    """Where sqlite-vec's loadable extension is, found without importing the package: its
    __init__ imports numpy, some 15 MB and 40 ms that nothing else at start-up needs."""
    spec = importlib.util.find_spec("sqlite_vec")
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(next(iter(spec.submodule_search_locations))) / "vec0")


@functools.cache
def _vec_error() -> str | None:
    conn = sqlite_module().connect(":memory:")
    try:
        return _load_vec(conn)
    finally:
        conn.close()


def connect(path: Path | str, *, load_vec: bool = True) -> Any:
    """Open a connection in autocommit mode (transactions are explicit), WAL, busy_timeout.

    The database file is created 0600 before SQLite opens it (SQLite would make it 0644 under
    the usual umask); its -wal and -shm files take the database file's mode.
    """
    from bot.security.files import create_private_file, tighten

    if str(path) != ":memory:":
        db = Path(path)
        create_private_file(db)
        tighten([db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm"))])
    mod = sqlite_module()
    conn = mod.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _set_wal(conn, mod)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    if load_vec and _vec_error() is None:
        _load_vec(conn)
    return conn


def _set_wal(conn: Any, mod: ModuleType) -> None:
    """Switching a new database to WAL needs it to itself, and SQLite answers "locked" at
    once instead of waiting out the busy timeout when another process opens it at the same
    moment (two replicas, or a CLI beside the gateway): wait for it like the timeout would."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except mod.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def info() -> SqliteInfo:
    mod = sqlite_module()
    conn = mod.connect(":memory:")
    try:
        try:
            conn.execute("CREATE VIRTUAL TABLE t USING fts5(body)")
            fts5 = True
        except mod.OperationalError:
            fts5 = False
        err = _load_vec(conn)
        vec = None if err else conn.execute("SELECT vec_version()").fetchone()[0]
        return SqliteInfo(
            module=mod.__name__.split(".")[0],
            sqlite_version=mod.sqlite_version,
            can_load_extensions=hasattr(conn, "enable_load_extension"),
            fts5=fts5,
            vec_version=vec,
            vec_error=err,
        )
    finally:
        conn.close()


def vec_available() -> bool:
    return _vec_error() is None


# how SQLite says a disk refused or a file is damaged -------------------------------------
_SQLITE_IOERR, _SQLITE_READONLY, _SQLITE_FULL, _SQLITE_CANTOPEN = 10, 8, 13, 14
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def busy(exc: BaseException) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock `exc` waited for."""
    code = getattr(exc, "sqlite_errorcode", None)  # the primary code is the low byte
    return isinstance(code, int) and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)


def _refused(exc: BaseException, path: Path) -> StorageUnavailable | None:
    """The full, read-only, locked or failing disk behind `exc`, also when it surfaced as a
    later error (SQLite rolls the whole transaction back on SQLITE_FULL, so the savepoint's
    rollback fails). A lock is one only here, past the busy timeout: another process (a CLI
    command, a backup) held it longer than a turn can wait."""
    return refusal_in(exc, lambda seen: _sqlite_refusal(seen, path))


def _sqlite_refusal(seen: BaseException, path: Path) -> StorageUnavailable | None:
    code = getattr(seen, "sqlite_errorcode", None)  # the primary code is the low byte
    if isinstance(code, int) and code & 0xFF == _SQLITE_FULL:
        return StorageUnavailable("full", str(path))
    if isinstance(code, int) and (
        code & 0xFF == _SQLITE_READONLY
        or (code & 0xFF == _SQLITE_CANTOPEN and not os.access(path.parent, os.W_OK))
    ):
        return StorageUnavailable("read-only", str(path))
    if busy(seen):
        return StorageUnavailable("busy", str(path))
    if isinstance(code, int) and code & 0xFF == _SQLITE_IOERR:
        return StorageUnavailable("failing", str(path))
    return None


def refusal_in(
    exc: BaseException, judge: Callable[[BaseException], StorageUnavailable | None]
) -> StorageUnavailable | None:
    """The first refusal along `exc` and its causes: one said already, or one `judge` (the
    backend's reading of an error) finds."""
    for seen in error_chain(exc):
        if isinstance(seen, StorageUnavailable):
            return seen
        found = judge(seen)
        if found is not None:
            return found
    return None


def _damaged(exc: BaseException, path: Path) -> DatabaseDamaged | None:
    """A file SQLite cannot read as a database (SQLITE_CORRUPT, SQLITE_NOTADB)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return DatabaseDamaged(str(path), str(exc))
    return None
