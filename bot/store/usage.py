"""Token totals of stored turns, for /usage (SQL stays in bot/store)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.store import Conn, Store


@dataclass(frozen=True, slots=True)
class UsageTotal:
    person_id: str
    #: "provider:model"
    model: str
    input_tokens: int
    output_tokens: int
    turns: int


class UsageRepo:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def totals(self, since: float, person_id: str | None = None) -> list[UsageTotal]:
        """Tokens per person and model of the turns finished since `since` (one person's
        only, when given). A turn's usage is on its last stored message, the one with an
        outcome; its person is the one whose message started it."""
        only = "" if person_id is None else "AND coalesce(i.person_id, a.identity) = :person"

        def op(conn: Conn) -> list[UsageTotal]:
            # The person is looked up per answer, not joined: a scheduled turn that ran again
            # (its job not finished before a crash, or a failed try) keeps its turn id, and a
            # join would count each answer once per stored question. Each answer's tokens
            # were spent; the turn counts once.
            rows = conn.execute(
                f"""SELECT coalesce(i.person_id, a.identity, '?'),
                     coalesce(a.provider, '') || ':' || coalesce(a.model, ''),
                     sum(coalesce(a.input_tokens, 0)), sum(coalesce(a.output_tokens, 0)),
                     count(DISTINCT a.turn_id)
                   FROM (SELECT t.turn_id, t.provider, t.model, t.input_tokens, t.output_tokens,
                           (SELECT u.identity_key FROM turns u
                             WHERE u.turn_id = t.turn_id AND u.identity_key IS NOT NULL
                             ORDER BY u.id LIMIT 1) AS identity
                         FROM turns t
                         WHERE t.outcome IS NOT NULL AND t.created_at >= :since) a
                   LEFT JOIN identities i ON i.key = a.identity
                   WHERE 1 = 1 {only}
                   GROUP BY 1, 2 ORDER BY 1, 2""",
                {"since": since, "person": person_id},
            ).fetchall()
            return [UsageTotal(*r) for r in rows]

        return await self.store.read(op)
