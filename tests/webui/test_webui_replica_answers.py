"""Answers across replicas beyond the plain case: one announced while a replica's LISTEN
connection is down reaches the pages open there once it is back (once, and never over a copy
the replica holds), one whose announcement the store refused is announced again once its
rows are stored, and one made by the turn processes of a receiver
(`gateway.turn_processes` > 1) is announced like any other."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.cluster.web_answers import SharedWebAnswers
from bot.gateway import Gateway
from tests.cluster.harness import DatabaseAdmin, database_admin, until
from tests.fakes.llm import FakeLLM, Reply
from tests.webui.conftest import client, until_event
from tests.webui.test_webui_replicas import open_chat, replica_config, signed_in_csrf

pytestmark = [pytest.mark.replicas]


def _text(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] for e in events if e["type"] == "delta")


def _shared(gw: Gateway) -> SharedWebAnswers:
    """The replica's side of the web chat's answers (its channel's relay)."""
    shared = gw.channels["web"].relay.__self__  # type: ignore[attr-defined]
    assert isinstance(shared, SharedWebAnswers)
    return shared


@contextlib.asynccontextmanager
async def _admin(pg_url: str) -> AsyncIterator[tuple[DatabaseAdmin, Any]]:
    """The test database's admin (which closes it to new connections and cuts them) and a
    superuser connection to the test database (which reads and locks)."""
    async with (
        database_admin(pg_url) as server,
        await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as db,
    ):
        yield server, db


async def _answer_stored(db: Any, message_id: str) -> bool:
    found = await db.execute(
        "SELECT count(*) FROM turns WHERE role = 'assistant' AND turn_id LIKE %s",
        (f"web:%:{message_id}",),
    )
    return bool((await found.fetchone())[0])


async def _stored(db: Any, message_id: str) -> None:
    async with asyncio.timeout(30):
        while not await _answer_stored(db, message_id):
            await asyncio.sleep(0.05)


def _long_leases(config: Any) -> Any:
    """Leases that outlast the outage: B does not take A's turn for one of a dead replica."""
    return config.model_copy(
        update={"gateway": config.gateway.model_copy(update={"session_lease_s": 120})}
    )


async def _cut_listen(gw: Gateway, server: DatabaseAdmin) -> None:
    assert gw.bus is not None
    await server.cut(gw.bus.backend_pid)
    await until(lambda: not gw.bus.listening.is_set(), timeout=30)  # type: ignore[union-attr]


async def test_an_answer_announced_while_a_replicas_listen_connection_is_down_reaches_its_pages(
    tmp_path: Path, pg_url: str, fake_llm: FakeLLM
) -> None:
    """The database takes no new connections while B's LISTEN connection is cut, so B cannot
    listen again before A's answer is announced; once it can, B's open page gets that
    answer from the history, and only once: a second cut brings nothing, neither that
    answer nor one B holds in another copy than the stored one."""
    fake_llm.push(Reply(text="Heard as it was streamed."))
    fake_llm.push(Reply(text="Said while you were away."))
    async with (
        Gateway(replica_config(tmp_path / "a", pg_url, fake_llm)) as a,
        Gateway(replica_config(tmp_path / "b", pg_url, fake_llm)) as b,
        client() as http,
        _admin(pg_url) as (server, db),
    ):
        csrf = await signed_in_csrf(http, a)
        on_b = await open_chat(http, b, csrf)
        on_a = await open_chat(http, a, csrf)
        assert b.bus is not None
        # an answer B hears whole, then stored in another text than the one streamed (as a
        # cut-off note or a failure note makes it)
        await on_a.send_json({"type": "send", "id": "msg-00000009", "text": "first"})
        assert _text(await until_event(on_b, "done")) == "Heard as it was streamed."
        await _stored(db, "msg-00000009")
        await db.execute(
            "UPDATE turns SET content = 'Stored otherwise.' WHERE role = 'assistant' "
            "AND turn_id LIKE 'web:%:msg-00000009'"
        )
        await server.allow_connections(False)
        await _cut_listen(b, server)
        await on_a.send_json({"type": "send", "id": "msg-00000010", "text": "tell me"})
        await until_event(on_a, "done")
        await until(lambda: not a.channels["web"]._relays, timeout=30)  # type: ignore[attr-defined]
        await _stored(db, "msg-00000010")  # what B reads back once it listens again
        await server.allow_connections(True)
        events = await until_event(on_b, "done")
        assert _text(events) == "Said while you were away."
        assert events[-1]["id"] == "msg-00000010"
        assert b.bus.reconnects == 1
        await _cut_listen(b, server)
        await until(lambda: _shared(b).caught_up == 2, timeout=30)
        with pytest.raises(TimeoutError):  # neither answer again, nor the stored copy
            await on_b.receive_json(timeout=1.0)
        assert b.bus.reconnects == 2
        await on_b.close()
        await on_a.close()


async def test_an_answer_whose_announcement_the_store_refused_is_announced_once_stored(
    tmp_path: Path, pg_url: str, fake_llm: FakeLLM
) -> None:
    """A's writer connection is cut while its model answers, and the database takes no new
    connection: the announcement and the turn's rows are refused (after a short wait), and
    B's LISTEN connection is lost too. B catches up while A's rows are still held back (a
    lock on `turns`), so it reads none; once they are in, A announces the kept answer again
    and B's page gets it."""
    fake_llm.push(Reply(text="Said while the store was away.", delay_s=1.0))
    async with (
        Gateway(_long_leases(replica_config(tmp_path / "a", pg_url, fake_llm))) as a,
        Gateway(_long_leases(replica_config(tmp_path / "b", pg_url, fake_llm))) as b,
        client() as http,
        _admin(pg_url) as (server, db),
    ):
        csrf = await signed_in_csrf(http, a)
        on_b = await open_chat(http, b, csrf)
        on_a = await open_chat(http, a, csrf)
        a.store.reconnect_wait_s = 1.0  # type: ignore[attr-defined]
        asked = len(fake_llm.requests)
        await on_a.send_json({"type": "send", "id": "msg-00000020", "text": "tell me"})
        await until(lambda: len(fake_llm.requests) > asked, timeout=30)  # the model takes its time
        await server.allow_connections(False)
        await server.cut(a.store._wconn.raw.info.backend_pid)  # type: ignore[attr-defined]
        await _cut_listen(b, server)
        said = await until_event(on_a, "done")
        assert _text(said) == "Said while the store was away.", said
        await until(lambda: _shared(a)._unsent and a.deliveries._unstored, timeout=60)
        async with db.transaction():
            await db.execute("LOCK TABLE turns IN SHARE MODE")  # reads go on, writes wait
            await server.allow_connections(True)
            await until(lambda: _shared(b).caught_up == 1, timeout=60)
            assert not await _answer_stored(db, "msg-00000020")
        events = await until_event(on_b, "done")
        assert _text(events) == "Said while the store was away."
        assert events[-1]["id"] == "msg-00000020"
        assert await _answer_stored(db, "msg-00000020")
        await on_b.close()
        await on_a.close()


async def test_an_answer_made_by_a_receivers_turn_processes_reaches_a_page_on_another_replica(
    tmp_path: Path, pg_url: str, fake_llm: FakeLLM
) -> None:
    """And the other way: an answer made on the other replica reaches the receiver's page."""
    fake_llm.push(Reply(text="From a turn process."))
    fake_llm.push(Reply(text="From the other replica."))
    spread = replica_config(tmp_path / "a", pg_url, fake_llm)
    spread = spread.model_copy(
        update={"gateway": spread.gateway.model_copy(update={"turn_processes": 2})}
    )
    async with (
        Gateway(spread) as receiver,
        Gateway(replica_config(tmp_path / "b", pg_url, fake_llm)) as other,
        client() as http,
    ):
        assert receiver.turn_processes is not None
        csrf = await signed_in_csrf(http, receiver)
        on_other = await open_chat(http, other, csrf)
        on_receiver = await open_chat(http, receiver, csrf)
        await on_receiver.send_json({"type": "send", "id": "msg-00000011", "text": "one"})
        assert _text(await until_event(on_receiver, "done")) == "From a turn process."
        assert _text(await until_event(on_other, "done")) == "From a turn process."
        await on_other.send_json({"type": "send", "id": "msg-00000012", "text": "two"})
        assert _text(await until_event(on_other, "done")) == "From the other replica."
        assert _text(await until_event(on_receiver, "done")) == "From the other replica."
        await on_other.close()
        await on_receiver.close()
