"""A turn on a replica that fails in a way no layer below planned for (a provider plugin's
bug): the person is told once, as on one process, and the session's next messages are still
answered; the failed delivery is set aside in the store, so no replica runs it again (not at
the session's next message there, nor at its sweep) until a replica starts. Each failure
counts as a try: one that always fails is given up at its last, however often replicas
start."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg
import pytest

from bot.cluster.leases import PgLeases
from bot.delivery import MAX_ATTEMPTS, delivery_key
from bot.gateway import Gateway
from bot.providers.base import ChatRequest
from bot.store.deliveries import SET_ASIDE
from tests.cluster.harness import pg_store, until
from tests.fakes.channel import RecordingChannel

pytestmark = pytest.mark.replicas

FAILED = "Something went wrong on my side. Please try again."


class FailsOnce:
    """Answers "answer to <text>"; the first ask of `first` fails, as a plugin's bug does."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, request: ChatRequest) -> str:
        text = str(request.messages[-1].content)
        self.asked.append(text)
        if text == "first" and self.asked.count("first") == 1:
            raise RuntimeError(f"a provider plugin's bug on {text!r}")
        return f"answer to {text}"


class FailsAlways(FailsOnce):
    """As FailsOnce, but every ask of `first` fails."""

    def __call__(self, request: ChatRequest) -> str:
        text = str(request.messages[-1].content)
        if text == "first":
            self.asked.append(text)
            raise RuntimeError("a provider plugin's bug")
        return super().__call__(request)


async def _idle(gw: Gateway) -> None:
    await until(lambda: gw.sessions.active == 0 and not gw.sessions.queue_depth)


async def test_a_turn_failing_unplanned_is_told_once_by_all_replicas_until_a_start(
    replica: Callable[..., Gateway],
) -> None:
    model = FailsOnce()
    on_a, on_b = RecordingChannel(console=True), RecordingChannel(console=True)
    said = lambda: on_a.texts() + on_b.texts()  # noqa: E731
    async with replica(model, on_a) as a, replica(model, on_b) as b:
        first = await on_a.push("first", delivery_id="f1")
        await until(lambda: said() == [FAILED])
        await on_a.push("second", delivery_id="f2")
        await until(lambda: "answer to second" in said())
        await _idle(a)
        found = await a.store.deliveries.get(("test", first.id))
        assert found is not None and found[0] == "pending", "left for the next start"
        assert found[2].retry_at == SET_ASIDE
        assert found[1] == "RuntimeError", "kept by type: an error's text may quote the person"
        # the other replica: the session's next message lands there, and its sweep looks
        # for work no replica holds once the first is past the stored one's grace
        await on_b.push("third", delivery_id="f3")
        await until(lambda: "answer to third" in said())
        assert b.replica is not None
        grace_s = b.replica.turns.grace_s
        await until(lambda: time.time() - first.received_at > grace_s)
        await b.replica.turns.sweep()
        await _idle(b)
        await a.replica.turns.sweep()  # type: ignore[union-attr]
        await _idle(a)
        assert model.asked == ["first", "second", "third"]
        assert said().count(FAILED) == 1
    # a start puts it back: run again (and answered, the bug being gone)
    on_c = RecordingChannel(console=True)
    async with replica(model, on_c) as c:
        await on_c.wait_for_messages(1, timeout=20)
        await _idle(c)
        assert await c.store.inbound.status("test", first.id) == "done"
    assert on_c.texts() == ["answer to first"]
    assert model.asked == ["first", "second", "third", "first"]


async def test_more_set_aside_than_one_look_returns_do_not_hide_the_next_delivery(
    pg_url: str,
) -> None:
    """A look at a session's open deliveries returns a batch at most: set-aside ones are not
    in it, however many there are."""
    channel = RecordingChannel(console=True)
    messages = [channel.inbound(f"m{n}", delivery_id=f"m{n}") for n in range(61)]
    async with pg_store(pg_url) as store:
        for message in messages:
            assert await store.inbound.insert(message)
        for message in messages[:60]:
            await store.deliveries.set_aside(delivery_key(message), "RuntimeError")
        leases = PgLeases(store, "replica-a", ttl_s=60)
        due = await leases.open_deliveries(messages[0].session_key)
        assert [d.message.id for d in due] == [messages[60].id]


async def test_a_turn_that_always_fails_is_given_up_at_its_last_try_however_often_replicas_start(
    replica: Callable[..., Gateway], caplog: pytest.LogCaptureFixture
) -> None:
    """Every replica's start puts set-aside deliveries back (on PostgreSQL each turn process
    is one): each run that fails counts as a try, so the person hears the failure at most
    MAX_ATTEMPTS times and the owner is told once that it was given up."""
    model = FailsAlways()
    channels = [RecordingChannel(console=True)]
    said = lambda: sum(ch.texts().count(FAILED) for ch in channels)  # noqa: E731
    async with replica(model, channels[0]) as a:
        first = await channels[0].push("first", delivery_id="f1")
        await until(lambda: said() == 1)
        key = ("test", first.id)
        await until(lambda: time.time() - first.received_at > a.replica.turns.grace_s)  # type: ignore[union-attr]

        async def settled() -> bool:
            found = await a.store.deliveries.get(key)
            assert found is not None
            return found[0] == "failed" or found[2].retry_at == SET_ASIDE

        await until(settled)
        with caplog.at_level(logging.WARNING, logger="decapod.gateway"):
            for _ in range(MAX_ATTEMPTS + 1):  # restarts of the others, one by one
                channels.append(RecordingChannel(console=True))
                async with replica(model, channels[-1]) as other:
                    await other.replica.turns.sweep()  # type: ignore[union-attr]
                    await until(settled)
                    await _idle(other)
                    await _idle(a)
        found = await a.store.deliveries.get(key)
    assert found is not None and found[0] == "failed"
    assert found[2].attempts == MAX_ATTEMPTS
    assert said() == MAX_ATTEMPTS
    assert model.asked.count("first") == MAX_ATTEMPTS
    notices = [r.getMessage() for r in caplog.records if "owner notice" in r.getMessage()]
    assert len(notices) == 1 and "gave up: no tries left" in notices[0], notices


async def test_a_replica_starts_when_the_store_refuses_to_put_back_what_was_set_aside(
    replica: Callable[..., Gateway], pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The store refuses the write that puts set-aside deliveries back (a read-only standby,
    here): the replica starts and answers all the same; what is set aside waits for the next
    start."""
    model = FailsOnce()
    on_a = RecordingChannel(console=True)
    async with replica(model, on_a) as a:
        first = await on_a.push("first", delivery_id="f1")
        await until(lambda: on_a.texts() == [FAILED])
        await _idle(a)
    refuse = (
        "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
        "RAISE EXCEPTION 'read-only' USING ERRCODE = 'read_only_sql_transaction'; END $$ "
        "LANGUAGE plpgsql; CREATE TRIGGER refuse BEFORE UPDATE ON inbound FOR EACH ROW "
        "WHEN (OLD.retry_at = 'Infinity' AND NEW.retry_at IS NULL) EXECUTE FUNCTION refuse()"
    )
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(refuse)  # type: ignore[arg-type]
    on_b = RecordingChannel(console=True)
    with caplog.at_level(logging.WARNING, logger="decapod.cluster"):
        async with replica(model, on_b) as b:
            await on_b.push("second", delivery_id="f2")
            await on_b.wait_for_messages(1, timeout=20)
            await _idle(b)
            found = await b.store.deliveries.get(("test", first.id))
            assert found is not None and found[2].retry_at == SET_ASIDE, "waits for a start"
    assert on_b.texts() == ["answer to second"]
    assert [r for r in caplog.records if "could not put back" in r.getMessage()]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("DROP TRIGGER refuse ON inbound")
    on_c = RecordingChannel(console=True)
    async with replica(model, on_c) as c:
        await on_c.wait_for_messages(1, timeout=20)
        await _idle(c)
    assert on_c.texts() == ["answer to first"]
