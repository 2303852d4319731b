"""The SQLite migration runner: the pending migrations are one transaction, so a new home's
schema is one commit and a crash or a failure part way leaves the version the database had."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bot.store import migration_runner, sqlite
from bot.store.migration_runner import migrate
from bot.store.migrations import MIGRATIONS

ROOT = Path(__file__).resolve().parents[2]


def _tables(db: Path) -> set[str]:
    conn = sqlite.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()


def _applied(db: Path) -> list[str]:
    conn = sqlite.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name")]
    finally:
        conn.close()


def test_a_new_homes_schema_is_one_commit(tmp_path: Path) -> None:
    conn = sqlite.connect(tmp_path / "a.db")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    assert migrate(conn) == sorted(MIGRATIONS)
    conn.close()
    assert [s for s in statements if s.startswith(("BEGIN", "COMMIT"))] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    assert _applied(tmp_path / "a.db") == sorted(MIGRATIONS)


def test_a_failing_migration_leaves_the_version_the_database_had(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "a.db"
    first = sorted(MIGRATIONS)[:3]
    conn = sqlite.connect(db)
    with monkeypatch.context() as patch:  # an older version: only its first three migrations
        for name in sorted(MIGRATIONS)[3:]:
            patch.delitem(MIGRATIONS, name)
        assert migrate(conn) == first
    before = _tables(db)

    def m999_fails(c: Any) -> None:
        c.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("the disk went away")

    monkeypatch.setitem(MIGRATIONS, "m999_fails", m999_fails)
    with pytest.raises(RuntimeError, match="disk went away"):
        migrate(conn)
    # none of the migrations before the failing one stayed, nor its own half
    assert _tables(db) == before and _applied(db) == first
    monkeypatch.delitem(MIGRATIONS, "m999_fails")
    assert migrate(conn) == sorted(MIGRATIONS)[3:]
    conn.close()
    assert _applied(db) == sorted(MIGRATIONS)


_CRASH = """
import os, sys
from bot.store import sqlite
from bot.store.migration_runner import migrate
from bot.store.migrations import MIGRATIONS

def m999_crash(conn):
    os._exit(9)  # the process dies mid-way: no rollback, no close

MIGRATIONS["m999_crash"] = m999_crash
migrate(sqlite.connect(sys.argv[1]))
"""


def test_a_crash_part_way_leaves_the_version_the_database_had(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    crashed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CRASH), str(db)], env=env, timeout=60
    )
    assert crashed.returncode == 9
    # every migration before the one that crashed had run in that process: none stayed
    assert _applied(db) == []
    assert _tables(db) == {"_migrations"}
    conn = sqlite.connect(db)
    assert migrate(conn) == sorted(MIGRATIONS)
    conn.close()
    assert "identities" in _tables(db)


def test_a_migration_sqlite_rolled_back_itself_raises_its_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `OR ROLLBACK` makes SQLite end the transaction itself, as a full disk or an I/O
    # error can: the runner's own ROLLBACK would then fail and hide this error
    def m999_rolled_back(c: Any) -> None:
        c.execute("CREATE TABLE once (x PRIMARY KEY)")
        c.execute("INSERT INTO once VALUES (1)")
        c.execute("INSERT OR ROLLBACK INTO once VALUES (1)")

    monkeypatch.setitem(MIGRATIONS, "m999_rolled_back", m999_rolled_back)
    conn = sqlite.connect(tmp_path / "a.db")
    with pytest.raises(sqlite.sqlite_module().IntegrityError, match="UNIQUE"):
        migrate(conn)
    assert not conn.in_transaction
    conn.close()
    assert _applied(tmp_path / "a.db") == []


def test_a_second_process_waits_out_another_ones_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "a.db"
    conn = sqlite.connect(db)
    migrate(conn)
    monkeypatch.setitem(MIGRATIONS, "m999_new", lambda c: c.execute("CREATE TABLE new (x)"))
    # the other process's upgrade holds the write lock past this connection's busy timeout
    conn.execute("PRAGMA busy_timeout = 50")
    upgrading, events = threading.Event(), []

    def other_upgrade() -> None:
        other = sqlite.connect(db)
        other.execute("BEGIN IMMEDIATE")
        upgrading.set()
        time.sleep(1.0)
        events.append("other committed")
        other.execute("COMMIT")
        other.close()

    thread = threading.Thread(target=other_upgrade)
    thread.start()
    upgrading.wait(30)
    with caplog.at_level(logging.INFO, logger="bot.store.migration_runner"):
        assert migrate(conn, where="a.db") == ["m999_new"]
    events.append("migrated")
    thread.join(30)
    conn.close()
    assert events == ["other committed", "migrated"]
    assert "a.db: waiting for another process's schema upgrade" in caplog.text


def test_the_wait_for_another_process_upgrade_ends_by_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each try that finds the write lock held waits the busy timeout first: none is started
    that would end past UPGRADE_WAIT_S."""
    db = tmp_path / "a.db"
    conn = sqlite.connect(db)
    migrate(conn)
    monkeypatch.setitem(MIGRATIONS, "m999_new", lambda c: c.execute("CREATE TABLE new (x)"))
    monkeypatch.setattr(migration_runner, "UPGRADE_WAIT_S", 3.0)
    conn.execute("PRAGMA busy_timeout = 2000")
    other = sqlite.connect(db)
    other.execute("BEGIN IMMEDIATE")  # an upgrade that outlasts the wait
    try:
        start = time.monotonic()
        with pytest.raises(sqlite.sqlite_module().OperationalError, match="locked"):
            migrate(conn)
        assert time.monotonic() - start < 3.0  # a second try would end after 4 s
    finally:
        other.execute("ROLLBACK")
        other.close()
        conn.close()
    assert "m999_new" not in _applied(db)
