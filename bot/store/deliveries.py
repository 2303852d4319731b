"""The outbound side of an inbound delivery: what of its answer reached the person, how often
sending failed, and how it ended. Kept on the delivery's row of `inbound` (m005).

While a delivery is unfinished its row holds the answer: all of it once the model finished
(`answer_final`), else what the person was shown. A finished row keeps the counts and the
message ids, never the text.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.messages import InboundMessage
from bot.store.repos import OPEN, set_inbound_status

if TYPE_CHECKING:
    from bot.store import Conn, Store

Key = tuple[str, str]  # (channel, delivery id)

#: `retry_at` of a delivery set aside (`DeliveryRepo.set_aside`): never due by time, so no
#: replica nor sweep runs it; the next start puts it back
SET_ASIDE = math.inf


@dataclass(slots=True)
class DeliveryState:
    #: tries that failed after the channel's own retries
    attempts: int = 0
    #: not to be tried again before this time (epoch seconds)
    retry_at: float | None = None
    #: the answer as far as it is known
    answer: str = ""
    #: `answer` is complete: the model finished it
    final: bool = False
    #: how many characters of `answer` the person can see
    shown: int = 0
    #: the platform's ids of the messages sent for it, in order
    refs: list[str] = field(default_factory=list)

    @property
    def started(self) -> bool:
        """Some of the answer reached the person."""
        return self.shown > 0 or bool(self.refs)


@dataclass(frozen=True, slots=True)
class OpenDelivery:
    message: InboundMessage
    state: DeliveryState


@dataclass(frozen=True, slots=True)
class DeliveryUpdate:
    """What to record of a delivery: its state, and with a `reason` the failed try it
    waits after (its attempts and retry_at). Written alone, or with the turn it answered."""

    key: Key
    state: DeliveryState
    reason: str | None = None

    def apply(self, conn: Conn, now: float) -> None:
        _save(conn, self.key, self.state, now)
        if self.reason is not None:
            conn.execute(
                "UPDATE inbound SET attempts = ?, retry_at = ?, error = ? "
                "WHERE channel = ? AND delivery_id = ?",
                (self.state.attempts, self.state.retry_at, self.reason, *self.key),
            )


def _save(conn: Conn, key: Key, state: DeliveryState, now: float) -> None:
    # an unfinished answer is kept only as far as it was shown: the rest died with the turn
    answer = state.answer if state.final else state.answer[: state.shown]
    conn.execute(
        "UPDATE inbound SET answer = ?, answer_final = ?, shown_chars = ?, sent_refs = ?, "
        "updated_at = ? WHERE channel = ? AND delivery_id = ? AND status IN " + OPEN,
        (answer, int(state.final), state.shown, json.dumps(state.refs), now, *key),
    )


class DeliveryRepo:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def save(self, key: Key, state: DeliveryState) -> None:
        """Record what of the answer the person can see now."""
        now = time.time()
        await self.store.write(lambda c: _save(c, key, state, now), cheap=True)

    async def record(self, update: DeliveryUpdate) -> None:
        now = time.time()
        await self.store.write(lambda c: update.apply(c, now), cheap=True)

    async def finish(self, key: Key, state: DeliveryState) -> None:
        """The whole answer reached the person."""
        now = time.time()

        def op(conn: Conn) -> None:
            _save(conn, key, state, now)
            set_inbound_status(conn, key, "done", None, now)

        await self.store.write(op, cheap=True)

    async def fail(self, key: Key, state: DeliveryState, reason: str) -> None:
        """Give the delivery up: it is never tried again."""
        now = time.time()

        def op(conn: Conn) -> None:
            _save(conn, key, state, now)
            conn.execute(
                "UPDATE inbound SET attempts = ? WHERE channel = ? AND delivery_id = ?",
                (state.attempts, *key),
            )
            set_inbound_status(conn, key, "failed", reason, now)

        await self.store.write(op, cheap=True)

    async def set_aside(self, key: Key, reason: str) -> None:
        """Its turn failed in a way no layer planned for, and the person was told: left
        pending, as on one process, but run by no replica until the next start. The failure
        counts as a try: every replica's start puts it back, and one that always fails is
        given up at its last try (bot/delivery.py), not said again at each start."""
        now = time.time()

        def op(conn: Conn) -> None:
            conn.execute(
                "UPDATE inbound SET attempts = attempts + 1, retry_at = ?, error = ?, "
                "updated_at = ? "
                "WHERE channel = ? AND delivery_id = ? AND status IN " + OPEN,
                (SET_ASIDE, reason, now, *key),
            )

        await self.store.write(op, cheap=True)

    async def put_back(self) -> int:
        """At a start: the deliveries set aside are due again (how many)."""

        def op(conn: Conn) -> int:
            cur = conn.execute(
                "UPDATE inbound SET retry_at = NULL WHERE status IN " + OPEN + " AND retry_at = ?",
                (SET_ASIDE,),
            )
            return int(cur.rowcount)

        return await self.store.write(op)

    async def unfinished(self) -> list[OpenDelivery]:
        """Deliveries stored but not finished (a crash, a stop mid-turn, a send that failed
        and waits for its next try), oldest first."""

        def op(conn: Conn) -> list[tuple[str, DeliveryState]]:
            rows = conn.execute(
                "SELECT payload, attempts, retry_at, answer, answer_final, shown_chars, "
                "sent_refs FROM inbound WHERE status IN " + OPEN + " ORDER BY received_at, rowid"
            ).fetchall()
            return [(r[0], _state(r[1:])) for r in rows]

        return [
            OpenDelivery(InboundMessage.from_dict(json.loads(payload)), state)
            for payload, state in await self.store.read(op)
        ]

    async def get(self, key: Key) -> tuple[str, str | None, DeliveryState] | None:
        """(status, error, state) of one delivery."""

        def op(conn: Conn) -> tuple[str, str | None, DeliveryState] | None:
            row = conn.execute(
                "SELECT status, error, attempts, retry_at, answer, answer_final, shown_chars, "
                "sent_refs FROM inbound WHERE channel = ? AND delivery_id = ?",
                key,
            ).fetchone()
            return (row[0], row[1], _state(row[2:])) if row else None

        return await self.store.read(op)


def _state(row: tuple[Any, ...]) -> DeliveryState:
    attempts, retry_at, answer, final, shown, refs = row
    return DeliveryState(attempts, retry_at, answer, bool(final), shown, json.loads(refs))
