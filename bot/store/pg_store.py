"""The store on PostgreSQL: the same interface and repositories as the SQLite store.

Writes keep SQLite's shape: the writes of one loop tick run together in one transaction on
one connection (each under its own savepoint when there are several), in the order they were
made, on a single writer thread. One such batch is with the server at a time: the writes made
while it commits wait and go together as the next one (group commit), so under load one
commit, the dearest part of a write here, serves many writes. Reads take a connection from a
psycopg pool on a reader thread; nothing waits on the network on the event loop, so `peek` is
a `read` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from bot.errors import StorageUnavailable, StoreError
from bot.store import Store, _settle_all
from bot.store.pg_vectors import VectorSupport
from bot.store.postgres import (
    PgConnection,
    configure,
    connect,
    migrate_pg,
    pg_refused,
    prepare_vectors,
)

if TYPE_CHECKING:
    from bot.progress import ProgressSink

T = TypeVar("T")
log = logging.getLogger(__name__)
#: between tries to reach a server that is out of reach
_RECONNECT_PAUSE_S = 0.25
#: a batch of several writes: each under its own savepoint
_BEGIN_SAVEPOINT = "BEGIN; SAVEPOINT item"
_NEXT_SAVEPOINT = "RELEASE SAVEPOINT item; SAVEPOINT item"


class PgStore(Store):
    backend = "postgresql"
    #: how long writes wait for a server out of reach before they fail
    reconnect_wait_s = 15.0

    def __init__(
        self,
        conninfo: str,
        *,
        password: str | None = None,
        pool_size: int = 4,
        migration_progress: ProgressSink | None = None,
        pool_wait_s: float = 30.0,
    ) -> None:
        super().__init__(redact_conninfo(conninfo), migration_progress=migration_progress)
        #: the URL without a password, for messages (`path` is no file here)
        self.label = redact_conninfo(conninfo)
        self.conninfo = conninfo
        self._password = password
        self._pool_size = pool_size
        #: how long a read waits for a pooled connection before storage is "busy" (or
        #: "unreachable"); a parameter so that tests need not wait the half minute
        self._pool_wait_s = pool_wait_s
        self._pool: Any = None
        #: pooled connections out with a read now: a pool that times out with some of them
        #: open is busy, one with none is cut off from the server
        self._lent = 0
        self._lent_lock = threading.Lock()
        self._writes: ThreadPoolExecutor | None = None
        self._wconn: PgConnection | None = None
        #: a batch is with the writer thread; later writes gather in `_pending` meanwhile
        self._writing = False
        self._batch_done = asyncio.Event()
        #: how memory's vectors are searched here (pgvector, or in process), once started
        self.vector_support = VectorSupport(reason="the store is not started")

    @property
    def vectors_available(self) -> bool:
        return True  # a pgvector column, or a plain table of float32 bytes ranked in process

    @property
    def pgvector(self) -> bool:
        return self.vector_support.pgvector is not None

    async def start(self) -> PgStore:
        loop = asyncio.get_running_loop()
        self._writes = ThreadPoolExecutor(1, thread_name_prefix="decapod-store-writer")
        try:
            self.migrations_applied = await loop.run_in_executor(self._writes, self._open_writer)
            self._pool = await asyncio.to_thread(self._open_pool)
        except Exception as exc:
            await self.stop()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open PostgreSQL store {self.label}: {exc}") from exc
        self._readers = ThreadPoolExecutor(
            self._pool_size, thread_name_prefix="decapod-store-reader"
        )
        return self

    def _open_writer(self) -> list[str]:
        self._wconn = connect(self.conninfo, self._password, self.pgvector)
        applied = migrate_pg(self._wconn, self._migration_progress, self.label)
        self.vector_support = prepare_vectors(self._wconn)
        return applied

    def _open_pool(self) -> Any:
        from psycopg_pool import ConnectionPool

        kwargs: dict[str, Any] = {"autocommit": True}
        if self._password is not None:
            kwargs["password"] = self._password
        pool = ConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=self._pool_size,
            timeout=self._pool_wait_s,
            kwargs=kwargs,
            configure=configure,
            open=False,
        )
        pool.open(wait=True, timeout=30)
        return pool

    async def stop(self) -> None:
        if self._writes is not None:
            while self._writing or self._pending:
                self._batch_done.clear()
                self._flush()
                await self._batch_done.wait()
            writes, self._writes = self._writes, None
            await asyncio.to_thread(writes.shutdown, wait=True)
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        if self._pool is not None:
            await asyncio.to_thread(self._pool.close)
            self._pool = None
        if self._wconn is not None:
            self._wconn.close()
            self._wconn = None

    # access --------------------------------------------------------------------------------
    async def write(self, fn: Callable[[Any], T], *, cheap: bool = False) -> T:
        if self._writes is None:
            raise StoreError("store is not started")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._pending.append((fn, fut))
        if len(self._pending) == 1 and not self._writing:
            loop.call_soon(self._flush)
        try:
            return await fut
        except Exception as exc:
            # a refusal for a while (read-only, full, out of reach) is said as SQLite's are,
            # so that every caller waiting for storage waits for this one too
            self._raise_refused(exc)
            raise

    def _raise_refused(self, exc: Exception) -> None:
        refused = pg_refused(exc, self.label)
        if refused is not None and refused is not exc:
            raise refused from exc

    def _flush(self) -> None:
        if not self._pending or self._writes is None or self._writing:
            return
        batch, self._pending = self._pending, []
        self._writing = True
        self._writes.submit(self._write_batch, asyncio.get_running_loop(), batch)

    def _written(self, results: list[tuple[Any, Any, BaseException | None]]) -> None:
        self._writing = False
        self._batch_done.set()
        _settle_all(results)
        # after the callers just woken have run: what they write next joins this batch
        asyncio.get_running_loop().call_soon(self._flush)

    def _write_batch(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Any, Any]]) -> None:
        results: list[tuple[Any, Any, BaseException | None]] = []
        try:
            conn = self._begin(len(batch) > 1)
        except Exception as exc:
            err = StoreError(f"write failed: cannot reach PostgreSQL: {exc}")
            err.__cause__ = exc
            results = [(fut, None, err) for _, fut in batch]
        else:
            try:
                results = self._run_batch_pg(conn, batch)
            except Exception as exc:  # the ROLLBACK after a failure failed too
                err = StoreError(f"write failed: {exc}")
                err.__cause__ = exc
                results = [(fut, None, err) for _, fut in batch]
                # its transaction may still be open and aborted: every later BEGIN on it
                # would fail, so the next batch opens a fresh connection
                self._wconn = None
                with contextlib.suppress(Exception):
                    conn.close()
        finally:
            # always: the next batch waits for this one to be done
            loop.call_soon_threadsafe(self._written, results)

    def _begin(self, savepoint: bool) -> PgConnection:
        """A transaction begun on the writer's connection. A connection the server dropped
        (a restart, a fail-over) is found out here, before anything ran, and opened again;
        while the server cannot be reached the writes wait for it, up to
        `reconnect_wait_s`, so a turn under way is recorded once it is back."""
        deadline: float | None = None
        while True:
            try:
                if self._wconn is None or self._wconn.broken:
                    self._wconn = connect(self.conninfo, self._password, self.pgvector)
                # statements without parameters go as one simple query: one round trip
                self._wconn.raw.execute(_BEGIN_SAVEPOINT if savepoint else "BEGIN")
                return self._wconn
            except Exception as exc:
                if self._wconn is not None and not self._wconn.broken:
                    raise  # the server answered: not a matter of reaching it
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.reconnect_wait_s
                    log.warning(
                        "the PostgreSQL connection was lost; writes wait up to %.0fs for it (%s)",
                        self.reconnect_wait_s,
                        exc,
                    )
                elif now >= deadline:
                    raise StorageUnavailable("unreachable", self.label) from exc
                time.sleep(min(_RECONNECT_PAUSE_S, max(deadline - now, 0.0)))

    def _run_batch_pg(
        self, conn: PgConnection, batch: list[tuple[Any, Any]]
    ) -> list[tuple[Any, Any, BaseException | None]]:
        """Run `batch` in the transaction `_begin` opened; each write's result or error."""
        results: list[tuple[Any, Any, BaseException | None]] = []
        alone = len(batch) == 1
        try:
            self.transactions += 1
            # other replicas and the CLI commit unseen: caches keyed on this never trust
            # themselves past one batch (SQLite's store counts only real foreign commits)
            self.foreign_commits += 1
            for i, (fn, fut) in enumerate(batch):
                if i:  # the first savepoint came with BEGIN; COMMIT releases the last
                    conn.raw.execute(_NEXT_SAVEPOINT)
                try:
                    value = fn(conn)
                except Exception as exc:
                    if not alone:
                        conn.raw.execute("ROLLBACK TO SAVEPOINT item")
                    results.append((fut, None, exc))
                else:
                    results.append((fut, value, None))
            # a lone write that failed leaves the transaction aborted: nothing to keep
            conn.execute("ROLLBACK" if alone and results[0][2] is not None else "COMMIT")
        except Exception as exc:
            if not conn.broken and conn.in_transaction:
                conn.execute("ROLLBACK")
            failed = (
                StorageUnavailable("unreachable", self.label)
                if conn.broken  # the server went away during the batch
                else StoreError(f"write failed: {exc}")
            )
            failed.__cause__ = exc
            results = [(fut, None, failed) for _, fut in batch]
        return results

    async def server_version(self) -> str:
        row = await self.read(lambda c: c.execute("SHOW server_version").fetchone())
        return str(row[0])

    async def peek(self, fn: Callable[[Any], T]) -> T:
        return await self.read(fn)

    async def read(self, fn: Callable[[Any], T]) -> T:
        if self._readers is None:
            raise StoreError("store is not started")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, self._read, fn)
        except Exception as exc:
            self._raise_refused(exc)  # as the writes are: whoever waits for storage waits
            raise

    def _read(self, fn: Callable[[Any], T]) -> T:
        from psycopg_pool import PoolTimeout

        # no probe of a pooled connection before each read (a round trip per read): a read
        # that finds its connection dropped by the server (a restart, a fail-over) is run
        # again on another, which the pool opens anew once its dropped ones are put back
        for attempt in range(self._pool_size + 1):
            raw = None
            try:
                with self._pool.connection() as raw:
                    with self._lent_lock:
                        self._lent += 1
                    try:
                        return fn(PgConnection(raw, self.pgvector))
                    finally:
                        with self._lent_lock:
                            self._lent -= 1
            except Exception as exc:
                if raw is None and isinstance(exc, PoolTimeout):
                    # no connection to be had in the pool's wait: the open ones are all out
                    # (busy), or none could be opened (the server is out of reach)
                    raise StorageUnavailable(self._pool_timeout_reason(), self.label) from exc
                if raw is not None and raw.broken and attempt == self._pool_size:
                    raise StorageUnavailable("unreachable", self.label) from exc
                if raw is None or not raw.broken:
                    raise
        raise AssertionError("unreachable")

    def _pool_timeout_reason(self) -> str:
        with self._lent_lock:
            lent = self._lent
        idle = int(self._pool.get_stats().get("pool_available", 0))
        return "busy" if lent or idle else "unreachable"


def redact_conninfo(conninfo: str) -> str:
    """The URL without a password, for logs and errors."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(conninfo)
    if parts.password is None:
        return conninfo
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
