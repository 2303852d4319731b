"""Replicas on one PostgreSQL database, in one process: session leases taken, renewed,
expired and released; the holder running what other replicas stored for its session, in
order; a freed session taken by the replica with work for it; a lease lost mid-run, or
taken over from a holder whose renewals stalled, never answered by the replica that lost it;
a dead replica's session taken over once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from bot.cluster.bus import Bus
from bot.cluster.leases import PgLeases
from bot.errors import StorageUnavailable
from bot.gateway import Gateway
from bot.store.deliveries import DeliveryState
from tests.cluster.harness import Model, pg_store, until
from tests.fakes.channel import RecordingChannel

pytestmark = pytest.mark.replicas


def _s1_expiry(conn: Any) -> float:
    row = conn.raw.execute(
        "SELECT expires_at FROM session_leases WHERE session_key = 's1'"
    ).fetchone()
    return float(row[0])


async def test_a_lease_is_taken_renewed_expires_and_is_released(pg_url: str) -> None:
    async with pg_store(pg_url) as store:
        a = PgLeases(store, "replica-a", ttl_s=60)
        b = PgLeases(store, "replica-b", ttl_s=60)
        bus = Bus(pg_url, None)
        freed: list[str] = []
        bus.subscribe("freed", freed.append)
        await bus.start()
        try:
            assert await a.acquire("s1")
            assert not await b.acquire("s1"), "held by a"
            assert await a.acquire("s1"), "a replica takes its own lease again"

            first = await store.read(_s1_expiry)
            await asyncio.sleep(0.2)
            assert await a.renew() == set()
            assert await store.read(_s1_expiry) >= first + 0.2, "renewed: its expiry moved on"

            # a holds it for a moment only, then stops renewing: as if it died
            dying = PgLeases(store, "replica-a", ttl_s=0.3)
            assert await dying.acquire("s1")
            await asyncio.sleep(0.6)
            assert await b.acquire("s1"), "expired: taken over"
            assert await a.renew() == {"s1"}, "a finds out it lost it"
            assert not await a.acquire("s1")

            await b.release("s1")
            await until(lambda: freed == ["s1"])
            rows = await store.read(lambda c: c.execute("SELECT * FROM session_leases").fetchall())
            assert rows == []
            assert await a.acquire("s1"), "free again"
        finally:
            await bus.stop()


async def test_a_late_holder_confirms_its_lease_in_the_database_before_it_sends(
    pg_url: str,
) -> None:
    """Past two thirds of a lease's lifetime since it was last taken or renewed, `confirm`
    asks the database: a lease still this replica's is renewed and confirmed (no other
    replica took it, however late), one another replica took is refused and let go."""
    async with pg_store(pg_url) as store:
        a = PgLeases(store, "replica-a", ttl_s=0.3)
        b = PgLeases(store, "replica-b", ttl_s=60)
        assert await a.acquire("s1")

        first = await store.read(_s1_expiry)
        await asyncio.sleep(0.25)  # past two thirds: the local assurance lapsed
        assert await a.confirm("s1"), "late, but nobody took it: still a's"
        assert await store.read(_s1_expiry) > first, "and renewed by the check"
        await asyncio.sleep(0.6)
        assert await b.acquire("s1"), "expired: taken over"
        assert not await a.confirm("s1"), "a finds out before it sends"
        assert "s1" not in a.held
        assert await b.confirm("s1")


async def test_a_held_lease_is_refused_without_waiting_for_its_holders_writes(
    pg_url: str,
) -> None:
    """The replicas with work for a session another one holds try its lease all the time.
    While the holder's write batch (a renewal among other writes) has the row locked, a try
    is refused at once: one that locked the row as well would wait for that batch, and two
    replicas' batches waiting for each other deadlock (a renewal lost that way loses the
    lease)."""
    async with pg_store(pg_url) as store:
        a = PgLeases(store, "replica-a", ttl_s=60)
        b = PgLeases(store, "replica-b", ttl_s=60)
        assert await a.acquire("s1")
        with psycopg.connect(pg_url) as holders_batch:
            holders_batch.execute(
                "UPDATE session_leases SET expires_at = expires_at + 1 WHERE session_key = 's1'"
            )
            refused = await asyncio.wait_for(b.acquire("s1"), 15)
            holders_batch.rollback()
        assert refused is False
        assert await a.acquire("s1"), "still a's"


class _DeadlockingStore:
    """The store, with its next `deadlocks` writes ended as the server ends one of two
    batches that wait for each other."""

    def __init__(self, store: Any, deadlocks: int, stated: bool) -> None:
        self.store, self.deadlocks, self.writes = store, deadlocks, 0
        #: the deadlock is the refusal's stated cause (`from`), else the error it arose in
        self.stated = stated

    async def write(self, op: Any, cheap: bool = False) -> Any:
        self.writes += 1
        if self.deadlocks:
            self.deadlocks -= 1
            # as the store says it: busy, for a while
            try:
                raise psycopg.errors.DeadlockDetected()
            except psycopg.errors.DeadlockDetected as exc:
                if self.stated:
                    raise StorageUnavailable("busy", "test") from exc
                raise StorageUnavailable("busy", "test")  # noqa: B904
        return await self.store.write(op, cheap=cheap)


@pytest.mark.parametrize("stated", [True, False], ids=["cause", "context"])
async def test_a_lease_write_ended_by_a_deadlock_is_tried_again_a_few_times(
    pg_url: str, stated: bool
) -> None:
    async with pg_store(pg_url) as store:
        flaky = _DeadlockingStore(store, deadlocks=2, stated=stated)
        a = PgLeases(flaky, "replica-a", ttl_s=60)  # type: ignore[arg-type]
        assert await a.acquire("s1"), "taken on the third try"
        assert flaky.writes == 3
        assert await a.renew() == set()
        flaky.deadlocks = 3
        with pytest.raises(StorageUnavailable):
            await a.release("s1")  # three tries, then the error is the caller's
        assert flaky.writes == 7


async def test_a_message_for_a_leased_session_is_run_by_the_holder_in_order(
    replica: Callable[..., Gateway],
) -> None:
    model = Model()
    model.held.add("one")
    on_a, on_b = RecordingChannel(console=True), RecordingChannel(console=True)
    async with replica(model, on_a) as a, replica(model, on_b) as b:
        await on_a.push("one", delivery_id="d1")
        await asyncio.wait_for(model.waiting.wait(), 20)
        # a holds the session; the next ones land on b (and one on a), stored in this order
        await on_b.push("two", delivery_id="d2")
        await on_b.push("three", delivery_id="d3")
        await on_a.push("four", delivery_id="d4")
        await b.sessions.wait_idle()
        assert on_b.texts() == [], "b left them pending for the holder"
        assert model.asked == ["one"]
        model.release.set()
        await on_a.wait_for_messages(4)
        await until(lambda: a.sessions.active == 0 and not a.sessions.queue_depth)
        await b.sessions.wait_idle()
        for key in ("d1", "d2", "d3", "d4"):
            assert await a.store.inbound.status("test", key) == "done"
    assert model.asked == ["one", "two", "three", "four"]
    assert on_a.texts() == [f"answer to {t}" for t in ("one", "two", "three", "four")]
    assert on_b.texts() == []


async def test_a_freed_session_is_taken_by_the_replica_with_work_for_it(
    replica: Callable[..., Gateway],
) -> None:
    """b stored a message while a held the session and a finished before looking again:
    a's release announces the session free, and b runs it at once (not at its sweep)."""
    model = Model()
    on_a, on_b = RecordingChannel(console=True), RecordingChannel(console=True)
    async with (
        replica(model, on_a, session_lease_s=600) as a,
        replica(model, on_b, session_lease_s=600) as b,  # its sweep is ten minutes away
    ):
        assert b.replica is not None and a.replica is not None
        key = on_a.inbound("x").session_key
        assert await a.replica.leases.acquire(key)  # a holds it, running nothing
        await on_b.push("waits for a", delivery_id="w1")
        await b.sessions.wait_idle()
        assert model.asked == []
        await a.replica.leases.release(key)
        await on_b.wait_for_messages(1)
    assert model.asked == ["waits for a"]


async def test_a_lease_lost_mid_run_stops_the_turn_unsent_and_leaves_the_rest(
    replica: Callable[..., Gateway],
) -> None:
    """A replica that finds at a renewal that another took its session over (it was out of
    reach longer than a lease lasts) sends nothing more of the turn under way, records
    nothing of it, and runs no more of the session: all of it is the new holder's."""
    model = Model()
    model.held.add("one")
    channel = RecordingChannel(console=True)
    async with replica(model, channel, session_lease_s=600) as gw:
        assert gw.replica is not None
        first = await channel.push("one", delivery_id="k1")
        await asyncio.wait_for(model.waiting.wait(), 20)
        await channel.push("two", delivery_id="k2")

        def taken_over(conn: Any) -> None:
            conn.raw.execute(
                "UPDATE session_leases SET holder = 'other' WHERE session_key = %s",
                (first.session_key,),
            )

        await gw.store.write(taken_over)
        assert await gw.replica.leases.renew() == {first.session_key}
        model.release.set()
        await until(lambda: gw.sessions.active == 0 and not gw.sessions.queue_depth)
        assert channel.texts() == [], "the answer was not sent by a replica that lost it"
        for key in ("k1", "k2"):
            assert await gw.store.inbound.status("test", key) != "done", "the holder's now"
    assert model.asked == ["one"]


async def test_a_stalled_holder_does_not_answer_what_the_new_holder_answered(
    replica: Callable[..., Gateway],
) -> None:
    """a runs a turn and its lease renewals stall (a process starved of CPU, a database
    slow to answer) longer than the lease lasts: b takes the session over and answers.
    When a's turn gets its model answer, a finds it no longer holds the session and sends
    nothing: the message is answered once."""
    slow, quick = Model(), Model()
    slow.held.add("one")
    on_a, on_b = RecordingChannel(console=True), RecordingChannel(console=True)
    renewals = asyncio.Event()  # never set: a's renewals hang
    async with replica(slow, on_a, session_lease_s=1.5) as a:
        assert a.replica is not None
        leases = a.replica.leases

        async def stalled() -> set[str]:
            await renewals.wait()
            return set()

        leases.renew = stalled  # type: ignore[method-assign]
        first = await on_a.push("one", delivery_id="k1")
        await asyncio.wait_for(slow.waiting.wait(), 20)
        assert first.session_key in leases.held
        async with replica(quick, on_b, session_lease_s=1.5) as b:
            # b's sweep takes the session once a's lease expired, and answers
            await on_b.wait_for_messages(1)
            slow.release.set()
            await until(lambda: a.sessions.active == 0 and not a.sessions.queue_depth)
            await until(lambda: b.sessions.active == 0 and not b.sessions.queue_depth)
            assert await b.store.inbound.status("test", "k1") == "done"
    assert on_b.texts() == ["answer to one"]
    assert on_a.texts() == [], "the stalled replica answered a second time"
    assert slow.asked == ["one"] and quick.asked == ["one"]


async def test_a_dead_replicas_session_is_resumed_by_another_once(
    replica: Callable[..., Gateway], pg_url: str
) -> None:
    """A replica died holding a session, its answer complete but partly shown: once its
    lease expired, another replica sends the rest (the model is not asked again), once. A
    session still held by a live replica is not touched."""
    channel = RecordingChannel(console=True)
    dead = channel.inbound("question", delivery_id="dead-1", user="p1")
    alive = channel.inbound("busy elsewhere", delivery_id="alive-1", user="p2")
    async with pg_store(pg_url) as store:
        for message in (dead, alive):
            assert await store.inbound.insert(message)
        state = DeliveryState(answer="Hello there, friend", final=True, shown=5, refs=[])
        await store.deliveries.save(("test", "dead-1"), state)

        def leases(conn: Any) -> None:
            conn.raw.execute(
                "INSERT INTO session_leases VALUES (%s, 'dead', extract(epoch from now()) + 1), "
                "(%s, 'alive', extract(epoch from now()) + 600)",
                (dead.session_key, alive.session_key),
            )

        await store.write(leases)
    model = Model()
    async with replica(model, channel, session_lease_s=1) as gw:
        await until(lambda: channel.texts() != [])
        await asyncio.sleep(2.5)  # two more sweeps: nothing runs again
        assert await gw.store.inbound.status("test", "dead-1") == "done"
        assert await gw.store.inbound.status("test", "alive-1") == "pending"
    assert model.asked == [], "the answer was complete: never asked of the model again"
    assert channel.texts() == ["there, friend"]
