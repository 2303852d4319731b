"""A session's turns across replicas: one replica at a time, in the order they were received.

On a replica the SessionManager's handler is `ReplicaTurns.handle`. A message taken from a
session's local queue only says "this session has work": the handler takes the session's
lease and then runs the session's unfinished deliveries from the database, oldest first,
whichever replica stored them, looking again until none is left before it lets the lease
go. So a message that lands on a replica while another holds its session is left pending
there and run by the holder, in order. A turn that fails in a way no layer planned for is
said once and left pending for the next start, as on one process: set aside in the store, so
no replica runs it again before then (bot/store/deliveries.py); the session goes on with its
next delivery.

A replica that could not take a lease remembers the session; the holder's release
announces `freed`, and the replica tries again. A slow sweep (every lease lifetime) takes
up what no live replica holds: a dead replica's sessions once their leases expired (its
partly shown answers go on from where they stopped, as after a restart: bot/delivery.py),
and anything whose notification was lost. The start of a replica is such a sweep, so it
resumes only the sessions whose lease it gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.delivery import SessionNotHeld, delivery_key
from bot.errors import StoreError
from bot.messages import InboundMessage
from bot.store.deliveries import Key, OpenDelivery
from bot.tasks import cancel_and_wait

if TYPE_CHECKING:
    from bot.cluster.bus import Bus
    from bot.cluster.leases import PgLeases
    from bot.gateway import Gateway
    from bot.sessions import Session

log = logging.getLogger("decapod.cluster")


class ReplicaTurns:
    def __init__(self, gw: Gateway, leases: PgLeases, bus: Bus) -> None:
        self.gw = gw
        self.leases = leases
        ttl = leases.ttl_s
        #: the sweep's period, and the age below which an unleased delivery is left to the
        #: replica that stored it (it is about to take the lease)
        self.sweep_s = ttl
        self.grace_s = ttl / 3
        #: sessions whose lease another replica held when this one had work for them
        self._deferred: dict[str, InboundMessage] = {}
        self._tasks: list[asyncio.Task[None]] = []
        bus.subscribe("freed", self._freed)
        bus.on_reconnect(self.sweep)
        # no answer goes out from a replica that lost the session meanwhile
        gw.deliveries.fence = leases

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._every(self.leases.ttl_s / 3, self._renew), name="renew"),
            asyncio.create_task(self._every(self.sweep_s, self.sweep), name="sweep"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        try:
            await cancel_and_wait(*tasks)
        finally:  # also when the stop is cancelled: the others need not wait for expiry
            with contextlib.suppress(Exception):
                await self.leases.release_all()

    # the handler -------------------------------------------------------------------------
    async def handle(self, session: Session, message: InboundMessage) -> None:
        key = session.key
        # remembered before trying: a `freed` that lands while the attempt is under way
        # must find it
        self._deferred[key] = message
        if not await self.leases.acquire(key):
            return  # left pending for the holder; `freed` or the sweep brings it back
        self._deferred.pop(key, None)
        try:
            # another replica may have added turns since this one last ran the session
            session.row = session.history = None
            ran: set[Key] = set()
            while batch := [d for d in await self.leases.open_deliveries(key) if _new(d, ran)]:
                for delivery in batch:
                    if not await self.leases.confirm(key):
                        return  # lost to another replica (this one was late): its now
                    ran.add(delivery_key(delivery.message))
                    await self._run(session, delivery)
        except SessionNotHeld:
            # lost mid-turn: the answer was not sent (or not all of it) nor recorded; the
            # new holder runs the delivery
            log.warning("stopped a turn of session %s: another replica took it over", key)
        finally:
            await self.leases.release(key)

    async def _run(self, session: Session, delivery: OpenDelivery) -> None:
        gw, message = self.gw, delivery.message
        young = time.time() - message.received_at < self.grace_s
        command = gw.commands.get(message.command.name) if message.command else None
        if command is not None and command.immediate and young:
            return  # the replica that stored it runs it at once (/approve, /stop)
        decision = await gw.access.decide(message)
        if not decision.allowed:
            if not young:  # its replica died before refusing it: refused here, once
                await gw.admit(message)
            return  # else its own replica refuses it (and says so once)
        if not await gw.deliveries.ready(delivery):
            return
        try:
            # tried again after a refusal by the store before the session's next delivery
            await gw.sessions.retried(functools.partial(gw.turns.run, session, message))
        except SessionNotHeld:
            raise
        except Exception as exc:
            # said to the person by the turn; the session goes on with its next delivery
            log.exception("turn in session %s failed", session.key)
            await self._set_aside(message, exc)

    async def _set_aside(self, message: InboundMessage, exc: Exception) -> None:
        """Left for the next start, unseen by every replica's next message and sweep (each
        would say the failure again). Its error is kept by type only: the text of an
        arbitrary error may quote the person's words (the log has it whole)."""
        try:
            await self.gw.store.deliveries.set_aside(delivery_key(message), type(exc).__name__)
        except StoreError as err:
            # not recorded: a later run of the session may try it (and say it) again
            log.warning("could not set delivery %s aside: %s", message.id, err)

    # wake-ups ----------------------------------------------------------------------------
    def _freed(self, session_key: str) -> None:
        message = self._deferred.pop(session_key, None)
        if message is not None:
            self.gw.sessions.submit(message)

    async def sweep(self) -> None:
        """Take up the sessions with due work that no live replica holds."""
        for message in await self.leases.unleased_work(self.grace_s):
            if message.conversation.channel in self.gw.channels:
                self.gw.sessions.submit(message)

    async def _renew(self) -> None:
        await self.leases.renew()

    @staticmethod
    async def _every(period_s: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                await job()
            except Exception as exc:
                # the database out of reach: said once per try, tried again next period
                log.warning("%s failed: %s", getattr(job, "__name__", "cluster job"), exc)


def _new(delivery: OpenDelivery, ran: set[Key]) -> bool:
    return delivery_key(delivery.message) not in ran
