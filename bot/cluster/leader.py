"""Leader election among replicas: one of them receives on the channels whose platform lets
only one connection receive (Telegram's long polling, Slack's Socket Mode, Discord's gateway).

The leader is whoever holds the session-level advisory lock `LEADER_LOCK`, on a connection of
its own. A follower waits for it with a blocking `pg_advisory_lock` on its own connection: the
server grants it the moment the leader's session ends (its process died, its connection was
cut), so a fail-over waits on no poll interval. Blocking, not trying every second: the wait
costs one idle connection per follower, and fail-over starts within a round trip.

Fencing. The server may end the leader's session before the leader knows (a restart,
`pg_terminate_backend`, a cut network). The leader asks its lock connection every `check_s`,
and a question unanswered within `check_s` or failing means the lock is gone: it stops
receiving at once. A new leader waits `takeover_s` (longer than that worst case, plus the
stop) after it got the lock before it starts receiving, so two replicas never receive at once.
A delivery that still arrived twice (a platform that redelivers) is dropped by the inbound
table's unique key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from bot.store.migration_runner import MIGRATION_LOCK
from bot.tasks import cancel_and_wait

log = logging.getLogger("decapod.cluster")

#: the advisory lock of the leader (next to the migrations' lock, "decapod" + 1)
LEADER_LOCK = MIGRATION_LOCK + 1
#: how often the leader makes sure its lock connection is alive; also the longest an answer
#: may take
CHECK_S = 1.0
#: how long a new leader waits after taking the lock: a deposed leader notices within
#: 2 * CHECK_S and stops receiving in well under a second
TAKEOVER_S = 2 * CHECK_S + 1.0
#: pause before connecting again after the lock connection failed
RETRY_S = 1.0
#: the longest pause between two tries of a leader to start receiving (a platform that
#: refused the connection, a network blip): each try waits twice as long as the one before
RECEIVE_RETRY_MOST_S = 30.0


class Role(StrEnum):
    #: a SQLite store: one process, nothing to elect
    SINGLE = "single"
    LEADER = "leader"
    FOLLOWER = "follower"


class LockLost(Exception):
    """The lock connection failed or did not answer in time."""


class LeaderElection:
    """Takes part in the election until `stop`; calls `on_elected` when this replica becomes
    the leader and `on_deposed` when it stops being one (lost lock, or stop)."""

    def __init__(
        self,
        conninfo: str,
        password: str | None,
        *,
        on_elected: Callable[[], Awaitable[None]],
        on_deposed: Callable[[], Awaitable[None]],
        name: str = "decapod",
        check_s: float = CHECK_S,
        takeover_s: float = TAKEOVER_S,
    ) -> None:
        self.conninfo = conninfo
        self.role = Role.FOLLOWER
        #: time.monotonic() when this replica last became the leader
        self.elected_at: float | None = None
        #: how many times this replica became the leader
        self.terms = 0
        self._password = password
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._name = name
        self.check_s = check_s
        self.takeover_s = takeover_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="leader-election")

    async def stop(self) -> None:
        """Stop receiving (when leading), then end the session: the lock goes with it."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            conn: Any = None
            starting: asyncio.Task[None] | None = None
            try:
                conn = await self._connect()
                await conn.execute("SELECT pg_advisory_lock(%s)", (LEADER_LOCK,))
                log.info("took the leader lock; receiving in %.1fs", self.takeover_s)
                await self._hold(conn, until=time.monotonic() + self.takeover_s)
                # the lock is watched while the channels connect, however long that takes
                starting = asyncio.create_task(self._elected(), name="leader-elected")
                await self._hold(conn, until=None)
            except (LockLost, OSError) as exc:
                log.warning("leader lock connection: %s", exc)
            except Exception as exc:
                import psycopg

                if isinstance(exc, psycopg.Error):
                    said = str(exc).strip() or type(exc).__name__
                    log.warning("leader lock connection: %s", said)
                else:  # never leave the election for good: that would leave no leader
                    log.exception("the leader election failed; trying again")
            finally:
                if starting is not None and not starting.done():
                    await cancel_and_wait(starting)
                if self.role is Role.LEADER:
                    await self._deposed()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(RETRY_S)

    async def _connect(self) -> Any:
        import psycopg

        kwargs: dict[str, Any] = {
            "autocommit": True,
            "application_name": f"{self._name} leader election"[:63],
            "connect_timeout": 5,
            # a server that vanished without closing the connection is found out while
            # waiting for the lock, too
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
        }
        if self._password is not None:
            kwargs["password"] = self._password
        return await psycopg.AsyncConnection.connect(self.conninfo, **kwargs)

    async def _hold(self, conn: Any, until: float | None) -> None:
        """Ask the lock connection every `check_s` until `until` (forever: None); LockLost
        as soon as it fails or an answer takes longer than `check_s`."""
        while until is None or time.monotonic() < until:
            try:
                async with asyncio.timeout(self.check_s):
                    await conn.execute("SELECT 1")
            except TimeoutError:
                raise LockLost(f"no answer within {self.check_s:g}s") from None
            except Exception as exc:
                raise LockLost(str(exc).strip() or type(exc).__name__) from None
            pause = self.check_s if until is None else min(self.check_s, until - time.monotonic())
            await asyncio.sleep(max(0.0, pause))

    async def _elected(self) -> None:
        self.role = Role.LEADER
        self.elected_at = time.monotonic()
        self.terms += 1
        log.info("this replica is the leader: receiving on the exclusive channels")
        # tried until it works while the lock holds: no other replica receives meanwhile, so
        # a leader that gave up after one failure would leave the bot deaf until a restart
        pause = RETRY_S
        while True:
            try:
                await self._on_elected()
                return
            except Exception:
                log.exception("starting to receive as the leader failed; again in %.0fs", pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RECEIVE_RETRY_MOST_S)

    async def _deposed(self) -> None:
        self.role = Role.FOLLOWER
        self.elected_at = None
        log.warning("this replica is no longer the leader: stopped receiving")
        try:
            await self._on_deposed()
        except Exception:
            log.exception("stopping to receive as a deposed leader failed")
