"""SQLite storage: one writer thread that batches, a small pool of readers, ordered migrations.

Every write is a function of a connection, queued to the single writer thread; the writer
drains the queue and runs what it found in one transaction (each item under its own
savepoint, so one failing write does not undo the others). SQL stays inside bot/store.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from bot.errors import StorageUnavailable, StoreError
from bot.store import sqlite
from bot.store.migrations import migrate

if TYPE_CHECKING:
    from bot.progress import ProgressSink

T = TypeVar("T")
Conn = Any  # a DB-API connection from sqlite3 or pysqlite3

_MAX_BATCH = 512
_STOP = object()


class Store:
    def __init__(self, path: Path | str, *, migration_progress: ProgressSink | None = None) -> None:
        self.path = Path(path)
        #: told of each migration applied at start (`decapod migrate` shows it); called on the
        #: writer thread
        self._migration_progress = migration_progress
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[Conn] = []
        self._conns_lock = threading.Lock()
        self.migrations_applied: list[str] = []
        #: how many write batches found commits made by another connection (another
        #: process, such as the CLI) since the batch before: caches of rows that others may
        #: change compare it
        self.foreign_commits = 0
        self._data_version = 0
        from bot.store.access import AccessRepo
        from bot.store.choices import ModelChoiceRepo
        from bot.store.deliveries import DeliveryRepo
        from bot.store.repos import IdentityRepo, InboundRepo, KvRepo, SessionRepo, TurnRepo
        from bot.store.usage import UsageRepo

        self.identities = IdentityRepo(self)
        self.sessions = SessionRepo(self)
        self.turns = TurnRepo(self)
        self.inbound = InboundRepo(self)
        self.deliveries = DeliveryRepo(self)
        self.kv = KvRepo(self)
        self.access = AccessRepo(self)
        self.model_choices = ModelChoiceRepo(self)
        self.usage = UsageRepo(self)

    # lifecycle -----------------------------------------------------------------------------
    async def start(self) -> Store:
        from bot.security.files import private_dirs

        private_dirs(self.path.parent)
        ready: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._writer = threading.Thread(
            target=self._write_loop,
            args=(asyncio.get_running_loop(), ready),
            daemon=True,
            name="decapod-store-writer",
        )
        self._writer.start()
        self.migrations_applied = await self._refusal_named(ready)
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="decapod-store-reader")
        return self

    async def stop(self) -> None:
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._conns_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    async def __aenter__(self) -> Store:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # access --------------------------------------------------------------------------------
    async def write(self, fn: Callable[[Conn], T]) -> T:
        """Run `fn(conn)` on the writer thread inside a transaction; returns its result."""
        if self._writer is None:
            raise StoreError("store is not started")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((fn, fut))
        return await self._refusal_named(fut)

    async def read(self, fn: Callable[[Conn], T]) -> T:
        if self._readers is None:
            raise StoreError("store is not started")
        loop = asyncio.get_running_loop()
        return await self._refusal_named(loop.run_in_executor(self._readers, self._read, fn))

    async def _refusal_named(self, pending: Awaitable[T]) -> T:
        """`pending`'s result; a full or read-only disk behind its error is raised as
        StorageUnavailable, so every caller can tell the person and the operator plainly."""
        try:
            return await pending
        except Exception as exc:
            refused = _refused(exc, self.path)
            if refused is None or refused is exc:
                raise
            raise refused from exc

    def _read(self, fn: Callable[[Conn], T]) -> T:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = sqlite.connect(self.path)
            with self._conns_lock:
                self._reader_conns.append(conn)
        return fn(conn)

    # the writer thread ---------------------------------------------------------------------
    def _write_loop(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Future[Any]) -> None:
        try:
            conn = sqlite.connect(self.path)
            applied = migrate(conn, self._migration_progress)
            self._data_version = _data_version(conn)
        except Exception as exc:
            err = _refused(exc, self.path) or StoreError(f"cannot open {self.path}: {exc}")
            loop.call_soon_threadsafe(_settle, ready, None, err)
            return
        loop.call_soon_threadsafe(_settle, ready, applied, None)
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in batch:
                stopping = True
                batch = [item for item in batch if item is not _STOP]
            if batch:
                self._run_batch(conn, loop, batch)
        conn.close()

    def _run_batch(
        self, conn: Conn, loop: asyncio.AbstractEventLoop, batch: list[tuple[Any, Any]]
    ) -> None:
        results: list[tuple[Any, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            # one cheap pragma per batch; it changes only when another connection committed
            version = _data_version(conn)
            if version != self._data_version:
                self._data_version = version
                self.foreign_commits += 1
            for fn, fut in batch:
                conn.execute("SAVEPOINT item")
                try:
                    value = fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO item")
                    results.append((fut, None, exc))
                else:
                    results.append((fut, value, None))
                conn.execute("RELEASE item")
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failed = _refused(exc, self.path) or StoreError(f"write failed: {exc}")
            results = [(fut, None, failed) for _, fut in batch]
        # one wake-up of the event loop for the whole batch, not one per write
        loop.call_soon_threadsafe(_settle_all, results)


def _data_version(conn: Conn) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


_SQLITE_READONLY, _SQLITE_FULL, _SQLITE_CANTOPEN = 8, 13, 14


def _refused(exc: BaseException, path: Path) -> StorageUnavailable | None:
    """The full or read-only disk behind `exc`, also when it surfaced as a later error (SQLite
    rolls the whole transaction back on SQLITE_FULL, so the savepoint's rollback fails)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, StorageUnavailable):
            return seen
        code = getattr(seen, "sqlite_errorcode", None)  # the primary code is the low byte
        if isinstance(code, int) and code & 0xFF == _SQLITE_FULL:
            return StorageUnavailable("full", str(path))
        if isinstance(code, int) and (
            code & 0xFF == _SQLITE_READONLY
            or (code & 0xFF == _SQLITE_CANTOPEN and not os.access(path.parent, os.W_OK))
        ):
            return StorageUnavailable("read-only", str(path))
        seen = seen.__cause__ or seen.__context__
    return None


def _settle_all(results: list[tuple[Any, Any, BaseException | None]]) -> None:
    for fut, value, err in results:
        _settle(fut, value, err)


def _settle(fut: asyncio.Future[Any], value: Any, err: BaseException | None) -> None:
    if fut.done():
        return
    if err is not None:
        fut.set_exception(err)
    else:
        fut.set_result(value)
