"""Session leases: which replica runs a session's turns now.

A lease is one row of `session_leases` (m009): the session, the replica holding it, and when
it expires. It is taken per run of a session's turns (the row is read first: a live lease
of another replica is only read, never locked, so the replicas with work for a held session
neither wait for its holder's write batch nor deadlock with it; a free session is inserted,
an expired or own lease updated), renewed for every lease a replica holds in one
statement while turns run long, deleted on completion with a `freed` notification in the
same transaction, and left to expire when a replica dies. Times are the database's clock, so
replicas on machines whose clocks disagree still agree on who holds what. A write the
server ended to break a deadlock with another replica's batch is tried again.

Before any text of an answer goes out, the holder `confirm`s the session is still its own
(the fence of bot/delivery.py). A lease taken or renewed by a statement sent at local time
t expires no sooner than t + ttl, so until t + ttl - ttl/3 (a third left for the send) the
answer is free of I/O; past that (the renewals were late: a stalled process, a database out
of reach) the holder renews that one lease, and a lease another replica took meanwhile
stops the turn unsent.

One process on SQLite needs none of this: `NoLeases` takes every lease at once, without I/O.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from bot.cluster.bus import notify, notify_after
from bot.errors import StorageUnavailable, error_chain
from bot.messages import InboundMessage
from bot.store.deliveries import OpenDelivery, _state

if TYPE_CHECKING:
    from bot.store import Store

log = logging.getLogger("decapod.cluster")
T = TypeVar("T")

_NOW = "EXTRACT(EPOCH FROM clock_timestamp())"
_OPEN = "('pending', 'running')"
#: what one look at a session's open deliveries returns at most (the holder looks again)
_BATCH = 50
#: tries of a lease write that the server ended to break a deadlock
_DEADLOCK_TRIES = 3


class SessionLeases(Protocol):
    async def acquire(self, session_key: str) -> bool:
        """Take the session's lease for this replica; False while another holds it."""
        ...

    async def release(self, session_key: str) -> None:
        """Give the lease back and tell the others the session is free."""
        ...

    async def confirm(self, session_key: str) -> bool:
        """Still this replica's, long enough for a send (bot.delivery.SessionFence)."""
        ...


class NoLeases:
    """One process on SQLite: every session is this process's own."""

    async def acquire(self, session_key: str) -> bool:
        return True

    async def confirm(self, session_key: str) -> bool:
        return True

    async def release(self, session_key: str) -> None:
        return None


class PgLeases:
    def __init__(self, store: Store, replica_id: str, ttl_s: float) -> None:
        self.store = store
        self.replica_id = replica_id
        self.ttl_s = ttl_s
        #: the leases this replica holds now
        self.held: set[str] = set()
        #: per lease held, the local monotonic time until which it is surely this replica's
        #: with a third of its lifetime to spare (see the module's doc)
        self._sure_until: dict[str, float] = {}

    async def acquire(self, session_key: str) -> bool:
        me, ttl = self.replica_id, self.ttl_s

        def op(conn: Any) -> bool:
            row = conn.raw.execute(
                f"SELECT holder = %s OR expires_at < {_NOW} FROM session_leases "
                "WHERE session_key = %s",
                (me, session_key),
            ).fetchone()
            if row is None:
                cur = conn.raw.execute(
                    "INSERT INTO session_leases (session_key, holder, expires_at) "
                    f"VALUES (%s, %s, {_NOW} + %s) ON CONFLICT (session_key) DO NOTHING",
                    (session_key, me, ttl),
                )
            elif not row[0]:
                return False  # another replica's live lease: read, not locked
            else:
                cur = conn.raw.execute(
                    f"UPDATE session_leases SET holder = %s, expires_at = {_NOW} + %s "
                    f"WHERE session_key = %s AND (holder = %s OR expires_at < {_NOW})",
                    (me, ttl, session_key, me),
                )
            return bool(cur.rowcount)

        sent_at = time.monotonic()
        taken = await self._write(op)
        if taken:
            self.held.add(session_key)
            self._sure(session_key, sent_at)
        return taken

    async def confirm(self, session_key: str) -> bool:
        if session_key not in self.held:
            return False
        if time.monotonic() < self._sure_until.get(session_key, 0.0):
            return True

        def op(conn: Any) -> bool:
            cur = conn.raw.execute(
                f"UPDATE session_leases SET expires_at = {_NOW} + %s "
                "WHERE session_key = %s AND holder = %s",
                (self.ttl_s, session_key, self.replica_id),
            )
            return bool(cur.rowcount)

        sent_at = time.monotonic()
        if await self._write(op):
            self._sure(session_key, sent_at)
            return True
        self._lost({session_key})
        return False

    def _sure(self, session_key: str, sent_at: float) -> None:
        if session_key in self.held:  # not released meanwhile
            self._sure_until[session_key] = sent_at + self.ttl_s * 2 / 3

    def _lost(self, keys: set[str]) -> None:
        self.held -= keys
        for key in keys:
            self._sure_until.pop(key, None)
            log.error("lost the lease of session %s to another replica", key)

    async def _write(self, op: Callable[[Any], T]) -> T:
        """A cheap lease write; tried again when the server ended it to break a deadlock
        with another replica's batch (its transaction then still holds what it locked, so
        the next try goes with the next batch)."""
        for _ in range(_DEADLOCK_TRIES - 1):
            try:
                return await self.store.write(op, cheap=True)
            except StorageUnavailable as exc:
                if not _deadlock(exc):
                    raise
        return await self.store.write(op, cheap=True)

    async def release(self, session_key: str) -> None:
        self.held.discard(session_key)
        self._sure_until.pop(session_key, None)

        def op(conn: Any) -> None:
            notify_after(
                conn,
                "DELETE FROM session_leases WHERE session_key = %s AND holder = %s",
                (session_key, self.replica_id),
                "freed",
                session_key,
            )

        await self._write(op)

    async def renew(self) -> set[str]:
        """Push back the expiry of every lease held; the ones lost meanwhile (this replica
        was out of reach longer than a lease lasts, and another took the session over)."""
        if not self.held:
            return set()

        def op(conn: Any) -> set[str]:
            rows = conn.raw.execute(
                f"UPDATE session_leases SET expires_at = {_NOW} + %s WHERE holder = %s "
                "RETURNING session_key",
                (self.ttl_s, self.replica_id),
            ).fetchall()
            return {r[0] for r in rows}

        sent_at = time.monotonic()
        kept = await self._write(op)
        for key in kept:
            self._sure(key, sent_at)
        # a lease taken after this statement (a later write) is not lost: it was not there
        taken_before = sent_at + self.ttl_s * 2 / 3
        lost = {k for k in self.held - kept if self._sure_until.get(k, 0.0) <= taken_before}
        self._lost(lost)
        return lost

    async def release_all(self) -> None:
        """At a stop: every lease this replica still holds, freed for the others at once."""

        def op(conn: Any) -> None:
            rows = conn.raw.execute(
                "DELETE FROM session_leases WHERE holder = %s RETURNING session_key",
                (self.replica_id,),
            ).fetchall()
            for (key,) in rows:
                notify(conn, "freed", key)

        self.held.clear()
        self._sure_until.clear()
        await self.store.write(op)

    async def holder(self, session_key: str) -> str | None:
        """The replica holding the session's lease now, if any."""

        def op(conn: Any) -> str | None:
            row = conn.raw.execute(
                "SELECT holder FROM session_leases "
                f"WHERE session_key = %s AND expires_at >= {_NOW}",
                (session_key,),
            ).fetchone()
            return None if row is None else str(row[0])

        return await self.store.read(op)

    async def open_deliveries(self, session_key: str) -> list[OpenDelivery]:
        """The session's unfinished deliveries whose try is due, in the order they were
        stored (the database's own sequence: replicas' clocks need not agree)."""
        now = time.time()

        def op(conn: Any) -> list[tuple[str, Any]]:
            rows = conn.raw.execute(
                "SELECT payload, attempts, retry_at, answer, answer_final, shown_chars, "
                f"sent_refs FROM inbound WHERE session_key = %s AND status IN {_OPEN} "
                "AND (retry_at IS NULL OR retry_at <= %s) ORDER BY rowid LIMIT %s",
                (session_key, now, _BATCH),
            ).fetchall()
            return [(r[0], _state(r[1:])) for r in rows]

        return [
            OpenDelivery(InboundMessage.from_dict(json.loads(payload)), state)
            for payload, state in await self.store.read(op)
        ]

    async def unleased_work(self, grace_s: float) -> list[InboundMessage]:
        """The oldest due delivery of each session with unfinished deliveries that no live
        replica holds, stored more than `grace_s` ago (younger ones are being taken up by
        the replica that stored them)."""
        now = time.time()

        def op(conn: Any) -> list[str]:
            rows = conn.raw.execute(
                "SELECT DISTINCT ON (i.session_key) i.payload FROM inbound i "
                "LEFT JOIN session_leases l ON l.session_key = i.session_key "
                f"WHERE i.status IN {_OPEN} AND (i.retry_at IS NULL OR i.retry_at <= %s) "
                "AND i.received_at < %s "
                f"AND (l.session_key IS NULL OR l.expires_at < {_NOW}) "
                "ORDER BY i.session_key, i.rowid",
                (now, now - grace_s),
            ).fetchall()
            return [r[0] for r in rows]

        payloads = await self.store.read(op)
        messages = [InboundMessage.from_dict(json.loads(p)) for p in payloads]
        return sorted(messages, key=lambda m: m.received_at)


def _deadlock(exc: BaseException) -> bool:
    """A write the server ended to break a deadlock (the store says it "busy")."""
    from psycopg.errors import DeadlockDetected

    return any(isinstance(seen, DeadlockDetected) for seen in error_chain(exc))
