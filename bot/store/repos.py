"""Repositories over the core tables: identities, sessions, turns, inbound deliveries, kv."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from bot.errors import IdentityRefused
from bot.messages import Identity, InboundMessage, person_id_problem
from bot.providers.base import ChatMessage, ToolCall, Usage

if TYPE_CHECKING:
    from bot.store import Conn, Store
    from bot.store.deliveries import DeliveryUpdate

#: the statuses of an unfinished delivery, as SQL
OPEN = "('pending', 'running')"


#: `json.dumps` with options builds an encoder per call (~20 us, more than the encoding)
_compact_json = json.JSONEncoder(separators=(",", ":")).encode


class _Repo:
    def __init__(self, store: Store) -> None:
        self.store = store


class IdentityRepo(_Repo):
    #: time zones looked up or set, so a turn does not read the table again
    _MAX_CACHED_ZONES = 10_000

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._zones: dict[str, str | None] = {}
        self._zone_writes = 0  # a lookup that raced with a write is not cached

    async def touch(self, identity: Identity) -> str:
        """Record that an identity was seen; returns its canonical person id. A new identity's
        key becomes its person id: one that could not be told from a group's owner in memory
        is refused (IdentityRefused). One stored before that check came is let through only
        when its person id is another, safe one (it was merged into a person)."""
        problem = person_id_problem(identity.key)
        if problem is not None:
            pid = await self.person_id(identity.key)
            if pid is None or person_id_problem(pid) is not None:
                raise IdentityRefused(problem)
        now = time.time()

        def op(conn: Conn) -> str:
            conn.execute(
                """INSERT INTO identities
                   (key, channel, user_id, display_name, is_bot, person_id, first_seen, last_seen)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(key) DO UPDATE SET last_seen = excluded.last_seen,
                     display_name = CASE WHEN excluded.display_name != ''
                                    THEN excluded.display_name ELSE identities.display_name END""",
                (
                    identity.key,
                    identity.channel,
                    identity.user_id,
                    identity.display_name,
                    int(identity.is_bot),
                    identity.key,
                    now,
                    now,
                ),
            )
            row = conn.execute(
                "SELECT person_id FROM identities WHERE key = ?", (identity.key,)
            ).fetchone()
            return str(row[0])

        return await self.store.write(op, cheap=True)

    async def person_id(self, identity_key: str) -> str | None:
        def op(conn: Conn) -> str | None:
            row = conn.execute(
                "SELECT person_id FROM identities WHERE key = ?", (identity_key,)
            ).fetchone()
            return str(row[0]) if row else None

        return await self.store.read(op)

    async def timezone(self, identity_key: str) -> str | None:
        if identity_key in self._zones:
            return self._zones[identity_key]

        def op(conn: Conn) -> str | None:
            row = conn.execute(
                "SELECT timezone FROM identities WHERE key = ?", (identity_key,)
            ).fetchone()
            return row[0] if row else None

        writes = self._zone_writes
        zone = await self.store.peek(op)
        if writes == self._zone_writes:
            self._remember_zone(identity_key, zone)
        return zone

    async def set_timezone(self, identity_key: str, zone: str) -> None:
        self._zone_writes += 1
        await self.store.write(
            lambda c: c.execute(
                "UPDATE identities SET timezone = ? WHERE key = ?", (zone, identity_key)
            )
        )
        self._remember_zone(identity_key, zone)

    def _remember_zone(self, identity_key: str, zone: str | None) -> None:
        if len(self._zones) >= self._MAX_CACHED_ZONES:
            self._zones.clear()
        self._zones[identity_key] = zone


@dataclass(slots=True)
class SessionRow:
    id: int
    key: str
    created_at: float
    summary: str
    summary_upto: int
    #: made by this call: it has no turns yet, so there is no history to read
    new: bool = False


class SessionRepo(_Repo):
    async def current(self, key: str) -> SessionRow:
        """The open session for `key`, created on first use."""

        def op(conn: Conn) -> SessionRow:
            row = conn.execute(
                "SELECT id, key, created_at, summary, summary_upto FROM sessions "
                "WHERE key = ? AND ended_at IS NULL ORDER BY id DESC LIMIT 1",
                (key,),
            ).fetchone()
            if row:
                return SessionRow(*row)
            now = time.time()
            cur = conn.execute("INSERT INTO sessions (key, created_at) VALUES (?, ?)", (key, now))
            return SessionRow(cur.lastrowid, key, now, "", 0, new=True)

        return await self.store.write(op, cheap=True)

    async def reset(self, key: str) -> SessionRow:
        """End the open session for `key` and start a fresh one (/new)."""

        def op(conn: Conn) -> SessionRow:
            now = time.time()
            conn.execute(
                "UPDATE sessions SET ended_at = ? WHERE key = ? AND ended_at IS NULL", (now, key)
            )
            cur = conn.execute("INSERT INTO sessions (key, created_at) VALUES (?, ?)", (key, now))
            return SessionRow(cur.lastrowid, key, now, "", 0, new=True)

        return await self.store.write(op)

    async def set_summary(self, session_id: int, summary: str, upto_turn_row: int) -> None:
        await self.store.write(
            lambda c: c.execute(
                "UPDATE sessions SET summary = ?, summary_upto = ? WHERE id = ?",
                (summary, upto_turn_row, session_id),
            )
        )

    async def count(self) -> int:
        return int(
            await self.store.read(
                lambda c: c.execute("SELECT count(*) FROM sessions").fetchone()[0]
            )
        )


@dataclass(slots=True)
class TurnRecord:
    """One stored message of a turn (user, assistant or tool)."""

    turn_id: str
    message: ChatMessage
    identity_key: str | None = None
    provider: str | None = None
    model: str | None = None
    usage: Usage | None = None
    latency_ms: float | None = None
    outcome: str | None = None


def _insert_turn(conn: Conn, session_id: int, rec: TurnRecord, now: float) -> int:
    msg, usage = rec.message, rec.usage or Usage()
    calls = json.dumps([_call_row(c) for c in msg.tool_calls]) if msg.tool_calls else None
    cur = conn.execute(
        """INSERT INTO turns (session_id, turn_id, role, content, tool_calls, tool_call_id, name,
           identity_key, provider, model, input_tokens, output_tokens, cache_read_tokens,
           cache_write_tokens, latency_ms, outcome, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            session_id,
            rec.turn_id,
            msg.role,
            msg.content,
            calls,
            msg.tool_call_id,
            msg.name,
            rec.identity_key,
            rec.provider,
            rec.model,
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            rec.latency_ms,
            rec.outcome,
            now,
        ),
    )
    return int(cur.lastrowid)


class TurnRepo(_Repo):
    async def add(
        self,
        session_id: int,
        records: list[TurnRecord],
        *,
        inbound_done: tuple[str, str] | None,
        delivery: DeliveryUpdate | None = None,
    ) -> list[int]:
        """Store a turn's messages, what of its answer was delivered, and mark its inbound
        delivery done (or keep it for a later try of its sending), in one transaction."""

        def op(conn: Conn) -> list[int]:
            now = time.time()
            ids = [_insert_turn(conn, session_id, r, now) for r in records]
            if delivery is not None:
                delivery.apply(conn, now)
            if inbound_done is not None:
                set_inbound_status(conn, inbound_done, "done", None, now)
            return ids

        return await self.store.write(op, cheap=True)

    async def has_turn(self, session_id: int, turn_id: str, role: str) -> bool:
        def op(conn: Conn) -> bool:
            return (
                conn.execute(
                    "SELECT 1 FROM turns WHERE session_id = ? AND turn_id = ? AND role = ?",
                    (session_id, turn_id, role),
                ).fetchone()
                is not None
            )

        return await self.store.read(op)

    async def history(
        self, session_id: int, after_row: int, limit: int
    ) -> list[tuple[int, ChatMessage]]:
        """The newest `limit` messages of a session after `after_row`, oldest first.
        Failed assistant replies are not history: the model never said them."""

        def op(conn: Conn) -> list[tuple[int, ChatMessage]]:
            rows = conn.execute(
                """SELECT id, role, content, tool_calls, tool_call_id, name FROM turns
                   WHERE session_id = ? AND id > ?
                     AND (outcome IS NULL OR outcome NOT IN ('error', 'timeout'))
                   ORDER BY id DESC LIMIT ?""",
                (session_id, after_row, limit),
            ).fetchall()
            return [(r[0], _row_message(r)) for r in reversed(rows)]

        return await self.store.peek(op)  # the newest rows of one session, by index

    async def for_session(self, session_id: int) -> list[dict[str, Any]]:
        def op(conn: Conn) -> list[dict[str, Any]]:
            conn_rows = conn.execute(
                "SELECT * FROM turns WHERE session_id = ? ORDER BY id", (session_id,)
            )
            names = [d[0] for d in conn_rows.description]
            return [dict(zip(names, row, strict=True)) for row in conn_rows.fetchall()]

        return await self.store.read(op)


def _call_row(call: ToolCall) -> dict[str, str]:
    row = {"id": call.id, "name": call.name, "arguments": call.arguments}
    if call.extra:  # what its provider wants back with it (bot/providers/openai_messages.py)
        row.update(extra=call.extra, extra_from=call.extra_from)
    return row


def _row_message(row: tuple[Any, ...]) -> ChatMessage:
    _, role, content, calls, call_id, name = row
    tool_calls = tuple(_row_call(c) for c in json.loads(calls)) if calls else ()
    return ChatMessage(role, content, tool_calls, call_id, name)


#: what a stored call may hold that this build reads
_CALL_FIELDS = frozenset(f.name for f in fields(ToolCall))


def _row_call(stored: dict[str, Any]) -> ToolCall:
    """A stored call, as far as this build knows its fields: a row a later build wrote
    (read after a rollback, or by an older replica) may hold more."""
    return ToolCall(**{k: v for k, v in stored.items() if k in _CALL_FIELDS})


def set_inbound_status(
    conn: Conn, key: tuple[str, str], status: str, error: str | None, now: float
) -> None:
    # a finished delivery keeps only its key (for dedupe) and counts, not what was written
    conn.execute(
        "UPDATE inbound SET status = ?, error = ?, updated_at = ?, "
        f"payload = CASE WHEN ? IN {OPEN} THEN payload ELSE '' END, "
        f"answer = CASE WHEN ? IN {OPEN} THEN answer ELSE '' END "
        "WHERE channel = ? AND delivery_id = ?",
        (status, error, now, status, status, key[0], key[1]),
    )


class InboundRepo(_Repo):
    async def insert(self, msg: InboundMessage) -> bool:
        """Persist a delivery before it is handled. False if it was seen before (duplicate)."""
        payload = _compact_json(msg.to_dict())

        def op(conn: Conn) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO inbound (channel, delivery_id, session_key, payload, "
                "status, received_at, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                (
                    msg.conversation.channel,
                    msg.id,
                    msg.session_key,
                    payload,
                    msg.received_at,
                    msg.received_at,
                ),
            )
            return bool(cur.rowcount)

        return await self.store.write(op, cheap=True)

    async def set_status(
        self, channel: str, delivery_id: str, status: str, error: str | None = None
    ) -> None:
        now = time.time()
        await self.store.write(
            lambda c: set_inbound_status(c, (channel, delivery_id), status, error, now),
            cheap=True,
        )

    async def open_deliveries(self) -> list[InboundMessage]:
        """Deliveries stored but not finished, oldest first (with their progress:
        `store.deliveries.unfinished()`)."""
        return [d.message for d in await self.store.deliveries.unfinished()]

    async def status(self, channel: str, delivery_id: str) -> str | None:
        def op(conn: Conn) -> str | None:
            row = conn.execute(
                "SELECT status FROM inbound WHERE channel = ? AND delivery_id = ?",
                (channel, delivery_id),
            ).fetchone()
            return row[0] if row else None

        return await self.store.read(op)

    async def prune(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s

        def op(conn: Conn) -> int:
            return int(
                conn.execute(
                    f"DELETE FROM inbound WHERE status NOT IN {OPEN} AND updated_at < ?",
                    (cutoff,),
                ).rowcount
            )

        return await self.store.write(op)


class KvRepo(_Repo):
    async def get(self, key: str) -> str | None:
        def op(conn: Conn) -> str | None:
            row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
            return row[0] if row else None

        # one row by its key: on the loop (the start's token and password reads open no
        # reader thread before ready)
        return await self.store.peek(op)

    async def set(self, key: str, value: str) -> None:
        now = time.time()
        await self.store.write(
            lambda c: c.execute(
                "INSERT INTO kv VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                "value = excluded.value, updated_at = excluded.updated_at",
                (key, value, now),
            )
        )
