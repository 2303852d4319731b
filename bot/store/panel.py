"""Read-mostly queries of the web UI's control panel and chat history (SQL stays in bot/store)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.store import Conn, Store


@dataclass(frozen=True, slots=True)
class TurnRow:
    session_key: str
    turn_id: str
    identity_key: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    outcome: str
    created_at: float


@dataclass(frozen=True, slots=True)
class UsageRow:
    person_id: str
    model: str
    day: str
    input_tokens: int
    output_tokens: int
    turns: int


@dataclass(frozen=True, slots=True)
class IdentityRow:
    person_id: str
    key: str
    display_name: str
    last_seen: float


class PanelQueries:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def recent_turns(self, limit: int) -> list[TurnRow]:
        """The newest finished turns of every session: what each cost and how long it took."""

        def op(conn: Conn) -> list[TurnRow]:
            rows = conn.execute(
                """SELECT s.key, a.turn_id,
                     coalesce((SELECT u.identity_key FROM turns u WHERE u.turn_id = a.turn_id
                               AND u.identity_key IS NOT NULL LIMIT 1), ''),
                     coalesce(a.provider, ''), coalesce(a.model, ''),
                     coalesce(a.input_tokens, 0), coalesce(a.output_tokens, 0),
                     coalesce(a.latency_ms, 0), a.outcome, a.created_at
                   FROM turns a JOIN sessions s ON s.id = a.session_id
                   WHERE a.outcome IS NOT NULL ORDER BY a.id DESC LIMIT ?""",
                (limit,),
            ).fetchall()
            return [TurnRow(*r) for r in rows]

        return await self.store.read(op)

    async def usage(self, since: float) -> list[UsageRow]:
        """Tokens per person, model and day (UTC) since `since`."""

        def op(conn: Conn) -> list[UsageRow]:
            rows = conn.execute(
                """SELECT coalesce(i.person_id, u.identity_key, '?'),
                     coalesce(a.provider, '') || ':' || coalesce(a.model, ''),
                     date(a.created_at, 'unixepoch'),
                     sum(coalesce(a.input_tokens, 0)), sum(coalesce(a.output_tokens, 0)),
                     count(*)
                   FROM turns a
                   LEFT JOIN turns u ON u.turn_id = a.turn_id AND u.identity_key IS NOT NULL
                   LEFT JOIN identities i ON i.key = u.identity_key
                   WHERE a.outcome IS NOT NULL AND a.created_at >= ?
                   GROUP BY 1, 2, 3 ORDER BY 3, 1, 2""",
                (since,),
            ).fetchall()
            return [UsageRow(*r) for r in rows]

        return await self.store.read(op)

    async def identities(self) -> list[IdentityRow]:
        def op(conn: Conn) -> list[IdentityRow]:
            rows = conn.execute(
                "SELECT person_id, key, display_name, last_seen FROM identities "
                "ORDER BY person_id, key"
            ).fetchall()
            return [IdentityRow(*r) for r in rows]

        return await self.store.read(op)

    async def deny_code(self, code: str) -> bool:
        """Drop a pending pairing code: the person stays unknown (and may ask again later)."""

        def op(conn: Conn) -> bool:
            cur = conn.execute("DELETE FROM pairing_codes WHERE code = ?", (code.upper(),))
            return bool(cur.rowcount)

        return await self.store.write(op)
