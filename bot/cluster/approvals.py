"""Approvals a turn waits for, answered on whichever replica the owner's /approve reaches.

The request is a row of `approvals` (m009) as well as a waiter on the replica whose turn
asked. `/approve ID` on any replica records the decision with one conditional UPDATE (the
first decision wins; an expired request takes none) and sends `approval:ID:1` (or `:0`) in
the same transaction; the waiting replica is woken by it. Should that notification be lost
(its LISTEN connection was being opened again), the waiter reads its row every
`recheck_s` until its time is up.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bot.cluster.bus import notify
from bot.sandbox.approval import InMemoryApprovalBroker, PendingApproval

if TYPE_CHECKING:
    from bot.cluster.bus import Bus
    from bot.gateway import Gateway
    from bot.store import Store
    from bot.tools import ToolContext


class SharedApprovalBroker(InMemoryApprovalBroker):
    def __init__(
        self,
        store: Store,
        bus: Bus,
        replica_id: str,
        *,
        notify: Callable[[PendingApproval], Awaitable[None]] | None = None,
        recheck_s: float = 30.0,
    ) -> None:
        super().__init__(notify)
        self.store = store
        self.replica_id = replica_id
        self.recheck_s = recheck_s
        bus.subscribe("approval", self._answered)

    async def request(self, ctx: ToolContext, summary: str, timeout: float) -> bool:  # noqa: ASYNC109
        now = time.time()
        info = None
        while info is None:  # ids are short to type; one taken on another replica is redrawn
            candidate = PendingApproval(
                secrets.token_hex(3), ctx.session_key, ctx.identity.key, summary, now, now + timeout
            )
            if await self.store.write(functools.partial(self._insert, info=candidate), cheap=True):
                info = candidate
        decision: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending[info.id] = (info, decision)
        try:
            if self._notify is not None:
                await self._notify(info)  # a failure reaches ask_owner: the owner was not asked
            return await self._wait(info, decision)
        finally:
            self._pending.pop(info.id, None)
            await self.store.write(
                lambda c: c.raw.execute("DELETE FROM approvals WHERE id = %s", (info.id,))
            )

    async def _wait(self, info: PendingApproval, decision: asyncio.Future[bool]) -> bool:
        while True:
            remaining = info.expires_at - time.time()
            if remaining <= 0:
                return False
            await asyncio.wait([decision], timeout=min(remaining, self.recheck_s))
            if decision.done():
                return decision.result()
            recorded = await self._recorded(info.id)  # a notification may have been lost
            if recorded is not None:
                return recorded

    async def decide(self, approval_id: str, approved: bool) -> bool:
        now = time.time()

        def op(conn: Any) -> bool:
            cur = conn.raw.execute(
                "UPDATE approvals SET approved = %s, decided_at = %s "
                "WHERE id = %s AND approved IS NULL AND expires_at > %s",
                (int(approved), now, approval_id, now),
            )
            if not cur.rowcount:
                return False
            notify(conn, "approval", f"{approval_id}:{int(approved)}")
            return True

        return bool(await self.store.write(op, cheap=True))

    async def waiting(self) -> list[PendingApproval]:
        now = time.time()

        def op(conn: Any) -> list[PendingApproval]:
            rows = conn.raw.execute(
                "SELECT id, session_key, requester, summary, created_at, expires_at "
                "FROM approvals WHERE approved IS NULL AND expires_at > %s ORDER BY created_at",
                (now,),
            ).fetchall()
            return [PendingApproval(*row) for row in rows]

        return await self.store.read(op)

    def _answered(self, arg: str) -> None:
        approval_id, _, approved = arg.partition(":")
        self._decide(approval_id, approved == "1")

    def _insert(self, conn: Any, info: PendingApproval) -> bool:
        cur = conn.raw.execute(
            "INSERT INTO approvals (id, holder, session_key, requester, summary, created_at, "
            "expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                info.id,
                self.replica_id,
                info.session_key,
                info.requester,
                info.summary,
                info.created_at,
                info.expires_at,
            ),
        )
        return bool(cur.rowcount)

    async def _recorded(self, approval_id: str) -> bool | None:
        row = await self.store.read(
            lambda c: c.raw.execute(
                "SELECT approved FROM approvals WHERE id = %s", (approval_id,)
            ).fetchone()
        )
        return None if row is None or row[0] is None else bool(row[0])


def approval_broker(
    gw: Gateway, notify_owner: Callable[[PendingApproval], Awaitable[None]]
) -> InMemoryApprovalBroker:
    """The sandbox's approval broker: on a replica, shared through the database."""
    if gw.replica is None:
        return InMemoryApprovalBroker(notify=notify_owner)
    return SharedApprovalBroker(
        gw.store,
        gw.replica.bus,
        gw.replica.id,
        notify=notify_owner,
        recheck_s=gw.config.gateway.session_lease_s,
    )
