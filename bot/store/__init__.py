"""SQLite storage: one writer thread that batches, a small pool of readers, ordered migrations.

Every write is a function of a connection. The writes of one event-loop tick are handed to the
single writer thread together (one wake-up of the thread, not one per write); the writer runs
what it found in one transaction, each item under its own savepoint when there are several,
so one failing write does not undo the others. A thread round trip costs more CPU than an
indexed lookup, so a cheap read (`peek`) runs on the event loop: on the writer's connection
while the writer thread holds nothing, else on the loop's own; searches and scans go to the
reader threads (`read`). SQL stays inside bot/store.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from bot.errors import DatabaseTooNew, StoreError
from bot.store import sqlite
from bot.store.migration_runner import migrate

# how SQLite says a disk refused lives with the connections (refusal_in is PostgreSQL's too)
from bot.store.sqlite import _SQLITE_BUSY, _damaged, _refused, busy
from bot.store.sqlite import refusal_in as refusal_in

if TYPE_CHECKING:
    from bot.progress import ProgressSink

T = TypeVar("T")
Conn = Any  # a DB-API connection from sqlite3 or pysqlite3

_MAX_BATCH = 512
_STOP = object()
_CHECKPOINT = object()
#: commits between WAL checkpoints (~1,000 pages: SQLite's own default, in commits of a few)
_CHECKPOINT_EVERY = 256
log = logging.getLogger(__name__)


class Store:
    #: "sqlite" here; the PostgreSQL store says "postgresql"
    backend = "sqlite"

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
        #: the writes of the current loop tick, run together at its end
        self._pending: list[tuple[Any, Any]] = []
        self._pending_heavy = False
        #: the writer's connection (the loop uses it too, when the writer holds nothing)
        self._conn: Conn | None = None
        #: items handed to the writer thread and not yet reported done
        self._in_writer = 0
        #: whether the writer's connection waits out another process's lock (the writer
        #: thread's setting) or answers "busy" at once (the loop's): switched when the other
        #: side takes the connection, not twice per batch (two statements a message under load)
        self._conn_waits = True
        self._commits_since_checkpoint = 0
        #: the event loop's own connection, for a `peek` while the writer's is not idle
        self._loop_conn: Conn | None = None
        #: transactions the writer committed (or tried to); a batch is one
        self.transactions = 0
        self.migrations_applied: list[str] = []
        #: how many write batches found commits made by another connection (another
        #: process, such as the CLI) since the batch before: caches of rows that others may
        #: change compare it
        self.foreign_commits = 0
        self._data_version = 0
        from bot.store.access import AccessRepo
        from bot.store.channel_state import ChannelStateRepo
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
        #: what channel adapters keep between messages (bot/channel_state.py)
        self.channel_state = ChannelStateRepo(self)

    @property
    def vectors_available(self) -> bool:
        """Whether memory's vector table can be used (sqlite-vec loads here)."""
        return sqlite.vec_available()

    # lifecycle -----------------------------------------------------------------------------
    async def start(self) -> Store:
        from bot.security.files import private_dirs

        private_dirs(self.path.parent)
        self._in_writer = 0  # a store started again after a stop starts clean
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
        self._loop_conn = sqlite.connect(self.path, load_vec=False)
        # Never wait on the loop: a busy database (a checkpoint, a recovery) sends the read
        # to a reader thread instead.
        self._loop_conn.execute("PRAGMA busy_timeout = 0")
        return self

    async def stop(self) -> None:
        if self._writer is not None:
            self._flush()
            self._hand_to_writer(_STOP)  # from now on the loop leaves the connection alone
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._conns_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        if self._loop_conn is not None:
            self._loop_conn.close()
            self._loop_conn = None

    async def __aenter__(self) -> Store:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # access --------------------------------------------------------------------------------
    async def write(self, fn: Callable[[Conn], T], *, cheap: bool = False) -> T:
        """Run `fn(conn)` inside a transaction with the other writes of this loop tick; returns
        its result. A `cheap` write (a few rows by key) may run on the event loop itself when
        the writer thread is idle: a thread round trip costs more than such a write."""
        if self._writer is None:
            raise StoreError("store is not started")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._pending.append((fn, fut))
        self._pending_heavy |= not cheap
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await self._refusal_named(fut)

    def _flush(self) -> None:
        """This tick's writes, in the order they were made: on the loop when all are cheap and
        the writer thread holds nothing (so nothing can overtake), else to the writer."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        heavy, self._pending_heavy = self._pending_heavy, False
        conn = None if heavy else self._idle_writer_conn()
        if conn is not None:
            # never waits on the loop for another process's lock: that batch goes to the writer
            results = self._run_batch(conn, batch)
            if results is not None:
                _settle_all(results)
                if self._commits_since_checkpoint >= _CHECKPOINT_EVERY:
                    self._hand_to_writer(_CHECKPOINT)  # its fsync stays off the loop
                return
        self._hand_to_writer(batch)

    def _idle_writer_conn(self) -> Conn | None:
        """The writer's connection for the loop to use now, set never to wait for a lock;
        None while the writer thread holds work (or before it has opened it), and while a
        transaction is left open on it (a ROLLBACK that failed, a KeyboardInterrupt inside a
        write): a read there would see rows nobody committed."""
        conn = self._conn
        if conn is None or self._in_writer or conn.in_transaction:
            return None
        if self._conn_waits:
            try:
                conn.execute("PRAGMA busy_timeout = 0")
            except Exception as exc:  # it could wait out a lock: the work goes elsewhere
                log.warning("cannot take over the writer's connection: %s", exc)
                return None
            self._conn_waits = False
        return conn

    def _hand_to_writer(self, item: object) -> None:
        self._in_writer += 1
        self._queue.put(item)

    def _writer_done(self, results: list[tuple[Any, Any, BaseException | None]], n: int) -> None:
        self._in_writer -= n
        _settle_all(results)

    async def peek(self, fn: Callable[[Conn], T]) -> T:
        """Run a cheap read (an indexed lookup of a few rows, or the whole of a table that
        holds a handful, like the web UI's passkeys) on the event loop: no thread round trip.
        Never for a search or a scan of a table that grows, which would hold up every turn.
        `fn` must return plain values (rows fetched, numbers), never a cursor or a lazy
        iterator: the connection it ran on may be the writer thread's again as soon as `fn`
        returns.
        The writer's connection when the writer holds nothing: its page cache is current,
        where the loop's own connection rereads every page the last commit changed (95 against
        119 us a lookup, measured in one P2 run with reads alternating between the two)."""
        conn = self._idle_writer_conn() or self._loop_conn
        if conn is None:
            raise StoreError("store is not started")
        try:
            return fn(conn)
        except Exception as exc:
            if busy(exc):
                return await self.read(fn)
            refused = _refused(exc, self.path)
            if refused is None or refused is exc:
                raise
            raise refused from exc

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
        conn = None
        try:
            conn = sqlite.connect(self.path)
            applied = migrate(conn, self._migration_progress, str(self.path))
            self._data_version = _data_version(conn)
            self._conn_waits = True  # sqlite.connect set the busy timeout
            # checkpoints run here, never in a commit made on the loop (see _flush)
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except DatabaseTooNew as exc:
            if conn is not None:
                conn.close()
            loop.call_soon_threadsafe(_settle, ready, None, exc)
            return
        except Exception as exc:
            if conn is not None:  # opened, then refused or found damaged: not left open
                conn.close()
            err = (
                _refused(exc, self.path)
                or _damaged(exc, self.path)
                or StoreError(f"cannot open {self.path}: {exc}")
            )
            loop.call_soon_threadsafe(_settle, ready, None, err)
            return
        self._conn = conn
        loop.call_soon_threadsafe(_settle, ready, applied, None)
        stopping = False
        while not stopping:
            # each item is one tick's writes (or a checkpoint); take whatever else is waiting
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = _STOP in items
            handed = [item for item in items if item is not _STOP]
            batch = [write for item in handed if item is not _CHECKPOINT for write in item]
            results: list[tuple[Any, Any, BaseException | None]] = []
            if batch and not self._conn_waits:  # the loop had it: wait out locks here again
                try:
                    conn.execute(f"PRAGMA busy_timeout = {sqlite.BUSY_TIMEOUT_MS}")
                    self._conn_waits = True
                except Exception as exc:  # the batch still runs; a lock fails it, not the thread
                    log.warning("cannot restore the writer's busy timeout: %s", exc)
            for start in range(0, len(batch), _MAX_BATCH):
                chunk = batch[start : start + _MAX_BATCH]
                done = self._run_batch(conn, chunk, wait=True)
                results += done if done is not None else []
            if self._commits_since_checkpoint >= _CHECKPOINT_EVERY or _CHECKPOINT in handed:
                self._checkpoint(conn)
            # one wake-up of the event loop for all of it, not one per write
            loop.call_soon_threadsafe(self._writer_done, results, len(handed))
        self._checkpoint(conn)
        self._conn = None
        conn.close()

    def _checkpoint(self, conn: Conn) -> None:
        self._commits_since_checkpoint = 0
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as exc:  # a full disk: the next one tries again
            log.warning("WAL checkpoint failed: %s", exc)

    def _run_batch(
        self, conn: Conn, batch: list[tuple[Any, Any]], *, wait: bool = False
    ) -> list[tuple[Any, Any, BaseException | None]] | None:
        """Run `batch` in one transaction; each write's result or error. None when the
        database is locked by another process and `wait` is off (nothing ran)."""
        results: list[tuple[Any, Any, BaseException | None]] = []
        # a lone write needs no savepoint: when it fails, the whole transaction is its own
        alone = len(batch) == 1
        try:
            if conn.in_transaction:  # left by a ROLLBACK that failed or an interrupted write
                log.warning("rolling back a transaction left open on the writer's connection")
                conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            if not wait and isinstance(code, int) and code & 0xFF == _SQLITE_BUSY:
                return None
            failed = _refused(exc, self.path) or StoreError(f"write failed: {exc}")
            return [(fut, None, failed) for _, fut in batch]
        self.transactions += 1
        self._commits_since_checkpoint += 1
        try:
            # one cheap pragma per batch; it changes only when another connection committed
            version = _data_version(conn)
            if version != self._data_version:
                self._data_version = version
                self.foreign_commits += 1
            for fn, fut in batch:
                if not alone:
                    conn.execute("SAVEPOINT item")
                try:
                    value = fn(conn)
                except Exception as exc:
                    if not alone:
                        conn.execute("ROLLBACK TO item")
                    elif conn.in_transaction:  # SQLite may have rolled it back (a full disk)
                        conn.execute("ROLLBACK")
                    results.append((fut, None, exc))
                else:
                    results.append((fut, value, None))
                if not alone:
                    conn.execute("RELEASE item")
            if conn.in_transaction:
                conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except Exception as rollback_exc:
                    # the batch still fails and settles (the writer thread lives on); the
                    # next batch rolls back what is left open before it begins
                    log.warning("rollback of a failed write failed: %s", rollback_exc)
            failed = _refused(exc, self.path) or StoreError(f"write failed: {exc}")
            results = [(fut, None, failed) for _, fut in batch]
        return results


def _data_version(conn: Conn) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


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
