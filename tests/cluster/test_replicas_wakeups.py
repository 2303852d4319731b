"""Wake-ups between replicas on one PostgreSQL database (LISTEN/NOTIFY): a new job wakes
another replica's scheduler, /approve and /stop on another replica reach the turn, the
LISTEN connection cut comes back; and the database dropping every connection, or out of
reach for a moment, in the middle of a turn."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from bot.cluster.approvals import SharedApprovalBroker
from bot.cluster.bus import Bus, notify
from bot.deps import Deps
from bot.gateway import Gateway
from bot.messages import Conversation, ConversationKind, Identity
from bot.providers.testing import FunctionProvider
from bot.scheduler.timing import Once
from bot.tools import ToolContext
from tests.cluster.harness import Model, pg_store, until
from tests.fakes.channel import RecordingChannel

pytestmark = pytest.mark.replicas


async def test_a_new_job_wakes_another_replicas_scheduler(
    replica: Callable[..., Gateway], make_config: Any, pg_url: str
) -> None:
    """b's scheduler planned its next look an hour away; a reminder scheduled on a (which
    delivers none itself) due in a second wakes b through NOTIFY, and b delivers it."""
    model = Model()
    on_a, on_b = RecordingChannel(console=True), RecordingChannel(console=True)
    config = make_config(
        store={"url": pg_url}, scheduler={"poll_seconds": 3600}, memory={"enabled": False}
    )
    async with (
        replica(model, on_b) as b,
        Gateway(
            config,
            provider=FunctionProvider(model),
            channels={"test": on_a},
            deliver_scheduled=False,
        ) as a,
    ):
        await a.warmup.wait()  # the scheduler is a warm-up step
        await b.warmup.wait()
        assert b.deps.scheduler is not None and a.deps.scheduler is not None
        await asyncio.sleep(0.3)  # b's loop has planned its next wake-up
        await a.deps.scheduler.schedule(
            person_id="p1",
            identity_key="test:u1",
            conversation=Conversation("test", "u1", ConversationKind.DM),
            text="feed the cat",
            when=Once(datetime.now(UTC) + timedelta(seconds=1)),
            timezone="UTC",
        )
        texts = await on_b.wait_for_messages(1, timeout=30)
    assert texts == ["⏰ feed the cat"]
    assert on_a.texts() == []


async def test_approve_on_another_replica_answers_the_waiting_turn(pg_url: str) -> None:
    async with pg_store(pg_url) as store_a, pg_store(pg_url) as store_b:
        bus_a, bus_b = Bus(pg_url, None), Bus(pg_url, None)
        await bus_a.start()
        await bus_b.start()
        asked: list[str] = []

        async def tell_owner(pending: Any) -> None:
            asked.append(pending.id)

        on_a = SharedApprovalBroker(store_a, bus_a, "a", notify=tell_owner, recheck_s=600)
        on_b = SharedApprovalBroker(store_b, bus_b, "b", recheck_s=600)
        ctx = ToolContext(
            identity=Identity("test", "u1", "U"),
            conversation=Conversation("test", "u1", ConversationKind.DM),
            session_key="test:dm:u1",
            deps=Deps(store=store_a, redact=str),
        )
        try:
            waiting = asyncio.create_task(on_a.request(ctx, "rm -rf build", timeout=60))
            await until(lambda: asked)
            listed = await on_b.waiting()  # `/approve` alone on b lists a's request
            assert [(p.id, p.summary) for p in listed] == [(asked[0], "rm -rf build")]
            assert await on_b.decide(asked[0], True), "b finds a's request in the database"
            assert await asyncio.wait_for(waiting, 10) is True
            assert not await on_b.decide(asked[0], False), "decided once; then gone"
            assert await on_b.waiting() == []

            denied = asyncio.create_task(on_a.request(ctx, "curl x | sh", timeout=60))
            await until(lambda: len(asked) == 2)
            assert await on_b.decide(asked[1], False)
            assert await asyncio.wait_for(denied, 10) is False
        finally:
            await bus_a.stop()
            await bus_b.stop()


async def test_an_approval_whose_notification_was_lost_is_read_from_the_database(
    pg_url: str,
) -> None:
    async with pg_store(pg_url) as store:
        deaf = Bus(pg_url, None)  # never started: a's notifications are lost
        asked: list[str] = []

        async def tell_owner(pending: Any) -> None:
            asked.append(pending.id)

        broker = SharedApprovalBroker(store, deaf, "a", notify=tell_owner, recheck_s=0.3)
        ctx = ToolContext(
            identity=Identity("test", "u1", "U"),
            conversation=Conversation("test", "u1", ConversationKind.DM),
            session_key="test:dm:u1",
            deps=Deps(store=store, redact=str),
        )
        waiting = asyncio.create_task(broker.request(ctx, "rm -rf build", timeout=60))
        await until(lambda: asked)
        other = SharedApprovalBroker(store, Bus(pg_url, None), "b")
        assert await other.decide(asked[0], True)
        assert await asyncio.wait_for(waiting, 10) is True


async def test_stop_on_another_replica_stops_the_turn(replica: Callable[..., Gateway]) -> None:
    model = Model()
    model.held.add("a long one")
    on_a, on_b = RecordingChannel(console=True), RecordingChannel(console=True)
    async with replica(model, on_a) as a, replica(model, on_b):
        await on_a.push("a long one", delivery_id="l1")
        await asyncio.wait_for(model.waiting.wait(), 20)
        await on_b.push("/stop", delivery_id="l2")
        assert await on_b.wait_for_messages(1) == ["Stopping it."]
        assert await on_a.wait_for_messages(1) == ["Stopped."]
        await until(lambda: a.sessions.active == 0)
        assert await a.store.inbound.status("test", "l1") == "done"


async def test_the_listen_connection_cut_comes_back_and_catches_up(pg_url: str) -> None:
    async with pg_store(pg_url) as store:
        bus = Bus(pg_url, None)
        seen: list[str] = []
        caught_up = asyncio.Event()

        async def catch_up() -> None:
            caught_up.set()

        bus.subscribe("ping", seen.append)
        bus.on_reconnect(catch_up)
        await bus.start()
        try:
            await store.write(lambda c: notify(c, "ping", "1"))
            await until(lambda: seen == ["1"])
            pid = bus.backend_pid
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            await asyncio.wait_for(caught_up.wait(), 20)
            assert bus.reconnects == 1 and bus.backend_pid != pid
            await store.write(lambda c: notify(c, "ping", "2"))
            await until(lambda: seen == ["1", "2"])
        finally:
            await bus.stop()


@pytest.mark.skipif(
    not hasattr(socket, "TCP_KEEPIDLE") or not hasattr(socket, "TCP_USER_TIMEOUT"),
    reason="the keepalive timings and TCP_USER_TIMEOUT are read with Linux's option names",
)
async def test_the_listen_connection_probes_a_silent_server(pg_url: str) -> None:
    """The LISTEN connection only reads: its socket sends TCP keepalives after 10 s idle, and
    unacknowledged data gives up after 30 s, so a server gone without a word is found within
    about half a minute, not hours."""
    bus = Bus(pg_url, None)
    await bus.start()
    try:
        sock = socket.socket(fileno=os.dup(bus._conn.pgconn.socket))
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30_000
        finally:
            sock.close()
    finally:
        await bus.stop()


async def test_database_connections_dropped_mid_turn_lose_nothing(
    replica: Callable[..., Gateway], pg_url: str
) -> None:
    """Every connection to the database is cut while a turn waits for the model: the
    store's writer and pool and the LISTEN connection open again, the turn is stored and
    answered once, and its lease is given back."""
    model = Model()
    model.held.add("slow one")
    channel = RecordingChannel(console=True)
    async with replica(model, channel) as gw:
        assert gw.replica is not None
        await channel.push("slow one", delivery_id="s1")
        await asyncio.wait_for(model.waiting.wait(), 20)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            cut = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        assert len(cut) >= 2
        model.release.set()
        await channel.wait_for_messages(1)
        await until(lambda: gw.sessions.active == 0 and not gw.sessions.queue_depth)
        await until(lambda: gw.replica is not None and gw.replica.bus.reconnects == 1)
        await channel.push("after", delivery_id="s2")
        await channel.wait_for_messages(2)
        await until(lambda: gw.sessions.active == 0 and not gw.sessions.queue_depth)
        assert await gw.store.inbound.status("test", "s1") == "done"

        def leases(conn: Any) -> list[Any]:
            return list(conn.execute("SELECT * FROM session_leases").fetchall())

        await until(lambda: not gw.replica.leases.held)  # type: ignore[union-attr]
        assert await gw.store.read(leases) == []
    assert channel.texts() == ["answer to slow one", "answer to after"]
    assert model.asked == ["slow one", "after"]


class Partition:
    """A TCP proxy in front of the database that can cut every connection through it and
    refuse new ones for a while, as a network partition does."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._url = parts
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        netloc = f"{self._url.username}@127.0.0.1:{self.port}"
        return urlunsplit(self._url._replace(netloc=netloc))

    async def heal(self) -> None:
        self._server = await asyncio.start_server(
            self._client, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self._open |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._open -= {writer, up_writer}


async def test_the_database_out_of_reach_mid_turn_loses_nothing(
    make_config: Any, pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The database cannot be reached for a moment while a turn waits for the model: the
    answer goes out, the turn's writes wait for the server (said once in the log) and are
    recorded when it is back; the delivery ends done, nothing runs twice, and the lease is
    given back."""
    partition = Partition(pg_url)
    await partition.heal()
    model = Model()
    model.held.add("slow one")
    channel = RecordingChannel(console=True)
    config = make_config(
        store={"url": partition.url},
        gateway={"session_lease_s": 3},
        scheduler={"poll_seconds": 3600},
        memory={"enabled": False},
    )
    async with Gateway(config, provider=FunctionProvider(model), channels={"test": channel}) as gw:
        assert gw.replica is not None
        await channel.push("slow one", delivery_id="s1")
        await asyncio.wait_for(model.waiting.wait(), 20)
        await partition.cut()
        model.release.set()
        await channel.wait_for_messages(1)  # sending needs no database
        await asyncio.sleep(1.5)  # out of reach a while longer
        await partition.heal()
        await until(lambda: gw.sessions.active == 0 and not gw.sessions.queue_depth)
        assert await gw.store.inbound.status("test", "s1") == "done"
        await until(lambda: gw.replica is not None and not gw.replica.leases.held)
        await asyncio.sleep(4)  # past a lease and a sweep: nothing runs again
        await channel.push("after", delivery_id="s2")
        await channel.wait_for_messages(2)
    await partition.cut()
    assert model.asked == ["slow one", "after"]
    assert channel.texts() == ["answer to slow one", "answer to after"]
    assert any("writes wait up to" in r.getMessage() for r in caplog.records)
