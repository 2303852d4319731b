"""This process as one replica of several on a PostgreSQL store: its id, its LISTEN
connection, its session leases, and the parts that wake each other through them."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING

from bot.cluster.bus import Bus, notify
from bot.cluster.leases import PgLeases
from bot.cluster.sessions import ReplicaTurns
from bot.errors import StoreError

if TYPE_CHECKING:
    from bot.gateway import Gateway
    from bot.model_choice import ModelChoices
    from bot.scheduler import Scheduler
    from bot.store.jobs import Job

log = logging.getLogger("decapod.cluster")


class Replica:
    def __init__(self, gw: Gateway) -> None:
        #: the gateway's replica id (bot/cluster/registry.py), as the leases name it
        self.id = str(gw.cluster.replica)
        store_cfg = gw.config.store
        self.bus = Bus(store_cfg.url, store_cfg.password())
        self.leases = PgLeases(gw.store, self.id, gw.config.gateway.session_lease_s)
        self.turns = ReplicaTurns(gw, self.leases, self.bus)
        self._gw = gw

    async def resume(self) -> None:
        """At start, once channels are up: take up the unfinished sessions no live replica
        holds (only those whose lease this one gets). The scheduler, a warm-up step, wires
        its wake-ups itself (wake_on_new_jobs)."""
        self.stop_elsewhere()
        # what a failed turn set aside runs again, as on one process after a restart
        try:
            await self._gw.store.deliveries.put_back()
        except StoreError as exc:
            # the start goes on: what is set aside waits for the next one
            log.warning("could not put back the deliveries set aside: %s", exc)
        self.turns.start()
        await self.turns.sweep()

    def stop_elsewhere(self) -> None:
        """/stop reaching this replica while another runs the session's turn: that replica
        is told, and stops it if it is the asker's (or the owner asked)."""
        running, store, leases = self._gw.running, self._gw.store, self.leases

        async def ask(session_key: str, person_id: str, anyone: bool) -> bool:
            holder = await leases.holder(session_key)
            if holder is None or holder == self.id:
                return False
            request = json.dumps([holder, session_key, person_id, anyone])
            await store.write(lambda c: notify(c, "stop", request), cheap=True)
            return True

        def asked(request: str) -> None:
            holder, session_key, person_id, anyone = json.loads(request)
            if holder == self.id:
                running.stop(session_key, person_id, anyone=anyone)

        running.elsewhere = ask
        self.bus.subscribe("stop", asked)

    def wake_on_new_jobs(self, scheduler: Scheduler) -> None:
        """A job scheduled on any replica wakes every replica's scheduler, so the one that
        claims it first does not wait for a wake-up it had planned later."""
        store = self._gw.store

        async def announce(job: Job) -> None:
            await store.write(lambda c: notify(c, "job", job.id), cheap=True)

        scheduler.on_scheduled = announce
        self.bus.subscribe("job", lambda _job_id: scheduler.wake())


async def start_replica(gw: Gateway, stack: contextlib.AsyncExitStack) -> Replica | None:
    """The replica part of a gateway whose store is PostgreSQL and which runs turns; None
    otherwise (one process on SQLite keeps its sessions in process, at no cost)."""
    if gw.store.backend != "postgresql":
        return None
    if gw.config.gateway.turn_processes > 1 and gw.share is None:
        # the receiver of turn processes runs no turns of people (each of them is a replica),
        # but its scheduler's tasks and check-ins read the /model choices: it hears changes;
        # and the web chat's answers pass through its channel: they are told on its bus
        store_cfg = gw.config.store
        bus = gw.bus = Bus(store_cfg.url, store_cfg.password())
        share_model_choices(gw.model_choices, bus, str(gw.cluster.replica))
        await bus.start()
        stack.push_async_callback(bus.stop)
        return None
    replica = Replica(gw)
    gw.bus = replica.bus
    share_model_choices(gw.model_choices, replica.bus, replica.id)
    await replica.bus.start()
    stack.push_async_callback(replica.bus.stop)
    gw.sessions.handler = replica.turns.handle
    # closed before the bus and after the sessions drained: every lease still held is freed
    stack.push_async_callback(replica.turns.stop)
    return replica


def share_model_choices(choices: ModelChoices, bus: Bus, replica_id: str) -> None:
    """A /model change on any replica makes the others read the choices again: its
    notification is sent by the write that stores it, so it cannot be lost between the two.
    After the connection that listens was lost (a notification may be missed), this one
    reads them again too."""

    def changed(by: str) -> None:
        if by != replica_id:
            choices.forget()

    async def caught_up() -> None:
        choices.forget()

    choices.in_write.append(lambda conn: notify(conn, "model", replica_id))
    bus.subscribe("model", changed)
    bus.on_reconnect(caught_up)
