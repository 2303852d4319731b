"""The long waits of the web UI on PostgreSQL, shortened through their parameters: a read that
finds every pooled connection out says storage is "busy" (after the pool's wait, half a
minute by default), and the expired upload rows go on the prune timer (hourly by default)
without any upload to set it off."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from bot.errors import StorageUnavailable
from bot.store.pg_store import PgStore
from bot.webui.upload_rows import RowUploads
from bot.webui.uploads import KEEP_S

pytestmark = [pytest.mark.replicas]


@pytest.fixture
async def admin(pg_url: str) -> AsyncIterator[Any]:
    conn = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


async def test_a_read_that_finds_every_pooled_connection_out_says_storage_is_busy(
    pg_url: str, admin: Any
) -> None:
    """The pool's only open connection is out with a read, and the server refuses another
    (the role's connection limit): the next read says "busy" once the pool's wait is over."""
    db = (await (await admin.execute("SELECT current_database()")).fetchone())[0]
    role = f"{db}_limited"
    await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    await admin.execute(f'ALTER DATABASE "{db}" OWNER TO "{role}"')
    store = PgStore(pg_url.replace("decapod@", f"{role}@", 1), pool_size=2, pool_wait_s=0.5)
    await store.start()
    held, release = threading.Event(), threading.Event()

    def hold(_conn: Any) -> None:
        held.set()
        release.wait(30)

    try:
        open_now = await admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,)
        )
        await admin.execute(
            f'ALTER ROLE "{role}" CONNECTION LIMIT {(await open_now.fetchone())[0]}'
        )
        holding = asyncio.ensure_future(store.read(hold))
        assert await asyncio.to_thread(held.wait, 30)
        started = time.monotonic()
        with pytest.raises(StorageUnavailable) as refused:
            await store.read(lambda c: c.execute("SELECT 1").fetchone())
        assert refused.value.reason == "busy"
        assert "storage is busy" in refused.value.user_message
        assert time.monotonic() - started < 20  # the wait given, not the default half minute
        release.set()
        await holding
    finally:
        release.set()
        await store.stop()
        await admin.execute(f'ALTER DATABASE "{db}" OWNER TO decapod')
        await admin.execute(f'REASSIGN OWNED BY "{role}" TO decapod')
        await admin.execute(f'DROP ROLE "{role}"')


async def test_expired_upload_rows_go_on_the_timer_without_an_upload(
    pg_url: str, admin: Any
) -> None:
    store = await PgStore(pg_url).start()
    uploads = RowUploads(store, 1 << 20, 1 << 20, prune_every_s=0.5, prune_retry_s=0.1)
    try:
        await uploads.started()  # the prune of the start: nothing to remove yet
        await admin.execute(
            "INSERT INTO web_uploads VALUES ('old', 'owner', 'a.txt', 'text/plain', 1, "
            "'document', %s, %s)",
            (time.time() - KEEP_S - 60, b"x"),
        )
        async with asyncio.timeout(30):  # generous: the machine is shared
            while True:
                left = await admin.execute("SELECT count(*) FROM web_uploads")
                if (await left.fetchone()) == (0,):
                    break
                await asyncio.sleep(0.1)
    finally:
        await uploads.stop()
        await store.stop()
