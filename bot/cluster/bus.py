"""Wake-ups between replicas: PostgreSQL's LISTEN/NOTIFY on one channel.

Each replica keeps one connection of its own that LISTENs (never one of the store's pool,
which would lose the subscription when handed back) and dispatches each notification to
the handlers of its topic. A notification is sent inside the store's write transaction,
so it reaches the others only once what it announces is committed.

A dropped connection is opened again with a growing pause; the notifications sent while it
was down are lost, so each reconnection calls the `on_reconnect` handlers, which look at
the database for what they may have missed. Nothing here polls. Two timers stand beside
it: the slow safety sweep of bot/cluster/sessions.py, and, only while web answers whose
announcement the store refused are kept, the check whether their rows are stored
(bot/cluster/web_answers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.tasks import cancel_and_wait, pause_after

log = logging.getLogger("decapod.cluster")

CHANNEL = "decapod"
Handler = Callable[[str], None]
#: pauses between tries to open the LISTEN connection again, the last repeated
_RECONNECT_S = (0.2, 0.5, 1.0, 2.0, 5.0)
#: the LISTEN connection only reads, so a server gone without a word (a host lost, a
#: network cut) leaves it half-open: TCP keepalives find that within about half a minute
#: (a probe after 10 s idle, then every 5 s, 3 unanswered), and the send timeout when it
#: writes, instead of the system's default of hours. Catch-up's margin (a minute,
#: bot/cluster/web_answers.py) counts on the loss being found that soon.
LISTEN_KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def notify(conn: Any, topic: str, arg: str) -> None:
    """Send `topic:arg` to every replica (delivered when `conn`'s transaction commits)."""
    conn.raw.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{topic}:{arg}"))


def notify_after(conn: Any, change: str, params: tuple[Any, ...], topic: str, arg: str) -> None:
    """Run `change` (an INSERT, UPDATE or DELETE) and send `topic:arg` as `notify` does, in one
    statement: one round trip on the hot path instead of two."""
    conn.raw.execute(
        f"WITH changed AS ({change}) SELECT pg_notify(%s, %s)",
        (*params, CHANNEL, f"{topic}:{arg}"),
    )


class Bus:
    def __init__(
        self, conninfo: str, password: str | None, *, connect_timeout_s: float = 10.0
    ) -> None:
        self._conninfo = conninfo
        self._password = password
        self._connect_timeout_s = connect_timeout_s
        self._handlers: dict[str, list[Handler]] = {}
        self._on_reconnect: list[Callable[[], Awaitable[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        #: set while the LISTEN is in place (tests wait on it)
        self.listening = asyncio.Event()
        #: how often the connection was opened again after a loss
        self.reconnects = 0
        #: wall-clock time the connection was last found lost (what was sent from about
        #: then on may be missed: the `on_reconnect` handlers look from there)
        self.lost_at = 0.0

    def subscribe(self, topic: str, handler: Handler) -> None:
        self._handlers.setdefault(topic, []).append(handler)

    def on_reconnect(self, handler: Callable[[], Awaitable[None]]) -> None:
        self._on_reconnect.append(handler)

    async def start(self) -> None:
        """Connect and LISTEN before returning (a database out of reach is a start error)."""
        self._conn = await self._listen()
        self._task = asyncio.create_task(self._run(), name="cluster-bus")

    async def stop(self) -> None:
        task, self._task = self._task, None
        try:
            await cancel_and_wait(task)
        finally:  # also when the stop is cancelled: the connection is not left open
            await self._close()

    @property
    def backend_pid(self) -> int | None:
        """The server process of the LISTEN connection (to cut it in tests)."""
        return None if self._conn is None else int(self._conn.info.backend_pid)

    async def _listen(self) -> Any:
        import psycopg

        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": self._connect_timeout_s,
            **LISTEN_KEEPALIVES,
        }
        if self._password is not None:
            kwargs["password"] = self._password
        conn = await psycopg.AsyncConnection.connect(self._conninfo, **kwargs)
        await conn.execute(f"LISTEN {CHANNEL}")
        self.listening.set()
        return conn

    async def _close(self) -> None:
        self.listening.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _run(self) -> None:
        import psycopg

        failures = 0
        while True:
            try:
                if self._conn is None:
                    self._conn = await self._listen()
                    self.reconnects += 1
                    log.info("listening for other replicas again")
                    failures = 0
                    for handler in self._on_reconnect:
                        await _safely(handler)
                async for note in self._conn.notifies():
                    self._dispatch(note.payload)
            except psycopg.Error as exc:
                pause = pause_after(_RECONNECT_S, failures)
                if failures == 0:
                    self.lost_at = time.time()
                    log.warning("lost the connection that listens for other replicas: %s", exc)
                failures += 1
                await self._close()
                await asyncio.sleep(pause)

    def _dispatch(self, payload: str) -> None:
        topic, _, arg = payload.partition(":")
        for handler in self._handlers.get(topic, ()):
            try:
                handler(arg)
            except Exception:
                log.exception("handling %r from another replica failed", payload)


async def _safely(handler: Callable[[], Awaitable[None]]) -> None:
    try:
        await handler()
    except Exception:
        log.exception("catching up after listening again failed")
