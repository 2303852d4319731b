"""Which gateway processes share this database, and as what.

Every replica has a `ReplicaId` (its host, its pid and when it started), made for each
gateway by `new_replica_id()`; the session leases (bot/cluster/leases.py) and the
heartbeats use the same id. On a PostgreSQL store each replica writes a heartbeat row every
`HEARTBEAT_S` (bot/store/replicas.py); a replica seen within `LIVE_BEATS` heartbeats counts
as live in /health and `decapod status`. A replica that stops takes its row away; one that
died leaves it to age out. The times are the replicas' own clocks: keep them in sync (NTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.tasks import cancel_and_wait

if TYPE_CHECKING:
    from bot.store import Store
    from bot.store.replicas import ReplicaRepo, ReplicaRow

log = logging.getLogger("decapod.cluster")

HEARTBEAT_S = 2.0
#: a replica is live while its last heartbeat is younger than this many heartbeats
LIVE_BEATS = 3
#: rows of replicas not seen for this long are removed by the others' heartbeats
FORGET_AFTER_S = 3600.0


@dataclass(frozen=True, slots=True)
class ReplicaId:
    """One gateway process: `str()` is its stable key ("host/pid/started_at")."""

    host: str
    pid: int
    #: Unix time the process started (a pid reused later is another replica)
    started_at: float

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}/{self.started_at:.3f}"

    @classmethod
    def parse(cls, text: str) -> ReplicaId:
        host, pid, started = text.rsplit("/", 2)
        return cls(host, int(pid), float(started))


_issued_lock = threading.Lock()
_last_issued_ms = 0


def new_replica_id() -> ReplicaId:
    """A fresh id for one gateway: a gateway started again, or a second one in this process,
    is another replica, and leases an earlier one held are not its own."""
    global _last_issued_ms
    with _issued_lock:
        _last_issued_ms = max(int(time.time() * 1000), _last_issued_ms + 1)
        started_ms = _last_issued_ms
    return ReplicaId(socket.gethostname(), os.getpid(), started_ms / 1000)


class ReplicaRegistry:
    """Heartbeats of this replica, and the live replicas as the table shows them."""

    def __init__(
        self,
        store: Store,
        replica: ReplicaId,
        role: Callable[[], str],
        *,
        every_s: float = HEARTBEAT_S,
    ) -> None:
        self.replica = replica
        self.every_s = every_s
        # the table of replicas is PostgreSQL's only: a gateway on SQLite never loads it
        from bot.store.replicas import ReplicaRepo

        self._repo: ReplicaRepo = ReplicaRepo(store)
        self._role = role
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self) -> None:
        await self.beat()
        self._task = asyncio.create_task(self._beating(), name="replica-heartbeat")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        with contextlib.suppress(Exception):  # a database that is gone: the row ages out
            await self._repo.remove(str(self.replica))

    async def beat(self) -> None:
        now = time.time()
        r = self.replica
        from bot.store.replicas import ReplicaRow

        row = ReplicaRow(str(r), r.host, r.pid, r.started_at, self._role(), now)
        await self._repo.beat(row, forget_before=now - FORGET_AFTER_S)

    async def live(self) -> list[ReplicaRow]:
        return await self._repo.seen_since(time.time() - LIVE_BEATS * self.every_s)

    async def _beating(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.beat()
            except Exception as exc:
                if not self._failing:  # said once per outage, not every two seconds
                    log.warning("replica heartbeat failed: %s; trying again", exc)
                self._failing = True
            else:
                if self._failing:
                    log.info("replica heartbeat written again")
                self._failing = False
