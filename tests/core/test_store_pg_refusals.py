"""The PostgreSQL store under replicas and refusals: what two replicas write at once to the web
UI's shared tables (a person's upload quota, a passkey challenge), and which errors are said
as storage that is out of reach (to wait for) and which are not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from bot.errors import StorageUnavailable
from bot.store import Store
from bot.store.config import StoreConfig, open_store
from bot.store.web_shared import UploadRow, WebSharedRepo


@pytest.fixture
async def two_stores(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two replicas' stores on one database."""
    config = StoreConfig(url=pg_url)
    async with open_store(config, tmp_path / "a") as a, open_store(config, tmp_path / "b") as b:
        yield a, b


async def _until_waiting_on_locks(admin: psycopg.AsyncConnection, count: int) -> None:
    """Until `count` other connections wait for a lock (in any order)."""
    for _ in range(200):
        cur = await admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        row = await cur.fetchone()
        if row is not None and row[0] >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} connections never waited for a lock")


def _row(upload_id: str, size: int) -> UploadRow:
    return UploadRow(upload_id, "web:owner", "a.txt", "text/plain", size, "document", time.time())


async def test_two_replicas_cannot_both_fit_an_upload_into_one_quota(
    two_stores: tuple[Store, Store], pg_url: str
) -> None:
    a, b = (WebSharedRepo(s) for s in two_stores)
    admin = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
    try:
        # the table held against inserts: both replicas have read the person's sum (or wait
        # to) before either may add its row, the widest window two replicas can have
        await admin.execute("BEGIN")
        await admin.execute("LOCK TABLE web_uploads IN SHARE ROW EXCLUSIVE MODE")
        adds = asyncio.gather(
            a.add_upload(_row("first", 600), b"x" * 600, 1000),
            b.add_upload(_row("second", 600), b"y" * 600, 1000),
        )
        await _until_waiting_on_locks(admin, 2)
        await admin.execute("COMMIT")
        assert sorted(await adds) == [False, True]
    finally:
        await admin.close()
    assert await a.kept_bytes("web:owner") == 600


async def test_two_replicas_issuing_a_challenge_for_one_key_both_succeed(
    two_stores: tuple[Store, Store], pg_url: str
) -> None:
    repo = WebSharedRepo(two_stores[0])
    other = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
    try:
        # the other replica's challenge for the key, written but not yet committed
        await other.execute("BEGIN")
        await other.execute(
            "INSERT INTO web_challenges VALUES (%s, %s, %s)",
            ("login:token", b"theirs", time.time() + 60),
        )
        put = asyncio.ensure_future(repo.put_challenge("login:token", b"ours", 60, keep=100))
        await _until_waiting_on_locks(other, 1)
        await other.execute("COMMIT")
        await put  # no unique violation
    finally:
        await other.close()
    assert await repo.take_challenge("login:token") == b"ours"


async def test_a_client_side_error_on_a_live_connection_is_not_said_as_unreachable(
    two_stores: tuple[Store, Store],
) -> None:
    store = two_stores[0]
    many = 70_000  # past the 65535 parameters the protocol can carry: libpq refuses it
    sql = "SELECT " + ", ".join(["?"] * many)

    def op(conn: object) -> object:
        return conn.execute(sql, [1] * many).fetchone()  # type: ignore[attr-defined]

    for access in (store.write, store.read):
        with pytest.raises(psycopg.OperationalError, match="number of parameters"):
            await access(op)  # not StorageUnavailable: nothing to wait for
    assert await store.read(lambda conn: conn.execute("SELECT 1").fetchone()[0]) == 1


async def test_a_read_refused_by_the_server_is_said_as_storage_unavailable(
    two_stores: tuple[Store, Store],
) -> None:
    def op(conn: object) -> None:
        conn.execute("BEGIN READ ONLY")  # type: ignore[attr-defined]
        try:
            conn.execute("CREATE TEMP TABLE t (a INTEGER)")  # type: ignore[attr-defined]
        finally:
            conn.execute("ROLLBACK")  # type: ignore[attr-defined]

    with pytest.raises(StorageUnavailable) as caught:
        await two_stores[0].read(op)
    assert caught.value.reason == "read-only"  # as a write's: whoever waits, waits for it


async def test_a_write_that_cannot_reach_the_server_past_the_wait_is_said_unreachable(
    two_stores: tuple[Store, Store], pg_url: str
) -> None:
    store = two_stores[0]
    store.reconnect_wait_s = 0.5  # type: ignore[attr-defined]
    db = psycopg.conninfo.conninfo_to_dict(pg_url)["dbname"]
    # from another database: a database cannot refuse the connection that says so
    admin_url = psycopg.conninfo.make_conninfo(pg_url, dbname="postgres")
    admin = await psycopg.AsyncConnection.connect(admin_url, autocommit=True)
    try:
        await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (db,)
        )
        with pytest.raises(StorageUnavailable) as caught:
            await store.write(lambda conn: conn.execute("SELECT 1"))
        assert caught.value.reason == "unreachable"
    finally:
        await admin.execute(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        await admin.close()
    await store.write(lambda conn: conn.execute("SELECT 1"))  # back once it can be reached


@pytest.mark.parametrize("condition", ["deadlock_detected", "serialization_failure"])
async def test_a_write_the_server_ended_for_another_is_said_busy(
    two_stores: tuple[Store, Store], condition: str
) -> None:
    """A deadlock or a serialization failure ends one write so that another goes on: said
    as a busy store, the turn that wrote waits and tries again (not a failure of its own)."""

    def op(conn: object) -> None:
        conn.execute(  # type: ignore[attr-defined]
            f"DO $$ BEGIN RAISE EXCEPTION 'ended for another' USING ERRCODE = '{condition}'; END $$"
        )

    with pytest.raises(StorageUnavailable) as caught:
        await two_stores[0].write(op)
    assert caught.value.reason == "busy"
