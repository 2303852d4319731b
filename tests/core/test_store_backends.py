"""The repositories on both store backends: SQLite, and PostgreSQL on a throwaway server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.errors import DatabaseTooNew
from bot.messages import Conversation, ConversationKind, Identity, InboundMessage
from bot.providers.base import ChatMessage, ToolCall, Usage
from bot.store import Store
from bot.store.config import StoreConfig, open_store
from bot.store.deliveries import DeliveryState
from bot.store.jobs import JobKind, JobRepo, JobStatus, NewJob
from bot.store.migrations import MIGRATIONS
from bot.store.repos import TurnRecord

StoreFactory = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgresql"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Makes (unstarted) stores on one database of the parametrized backend."""
    if request.param == "sqlite":
        config = StoreConfig(url=f"sqlite:///{tmp_path}/a.db")
    else:
        config = StoreConfig(url=request.getfixturevalue("pg_url"))
    return lambda: open_store(config, tmp_path)


@pytest.fixture
async def store(new_store: StoreFactory) -> AsyncIterator[Store]:
    async with new_store() as s:
        yield s


def _inbound(i: str) -> InboundMessage:
    return InboundMessage(i, Identity("c", "u"), Conversation("c", "u"), text=f"m{i}")


async def test_migrations_run_once_when_two_stores_start_together(new_store: StoreFactory) -> None:
    first, second = new_store(), new_store()
    await asyncio.gather(first.start(), second.start())
    try:
        assert sorted(first.migrations_applied + second.migrations_applied) == sorted(MIGRATIONS)
    finally:
        await asyncio.gather(first.stop(), second.stop())
    async with new_store() as again:
        assert again.migrations_applied == []


async def test_identities_link_to_one_person(store: Store) -> None:
    key = await store.identities.touch(Identity("c", "u", "Ann"))
    assert await store.identities.touch(Identity("c", "u", "Ann")) == key
    person = await store.identities.person_id(key)
    assert person is not None
    await store.identities.set_timezone(key, "Europe/Paris")
    assert await store.identities.timezone(key) == "Europe/Paris"


async def test_inbound_dedupe_and_open_deliveries(store: Store) -> None:
    assert await store.inbound.insert(_inbound("1"))
    assert not await store.inbound.insert(_inbound("1"))
    assert await store.inbound.insert(_inbound("2"))
    assert await store.inbound.insert(_inbound("3"))
    await store.inbound.set_status("c", "1", "done")
    pending = await store.inbound.open_deliveries()
    assert [m.id for m in pending] == ["2", "3"]
    assert pending[0].text == "m2" and pending[0].conversation == Conversation("c", "u")
    assert await store.inbound.status("c", "1") == "done"


async def test_inbound_dedupe_holds_under_concurrent_inserts(store: Store) -> None:
    results = await asyncio.gather(*(store.inbound.insert(_inbound("same")) for _ in range(20)))
    assert results.count(True) == 1


async def test_sessions_and_turns_round_trip(store: Store) -> None:
    row = await store.sessions.current("k")
    assert (await store.sessions.current("k")).id == row.id
    call = ToolCall("call1", "current_time", '{"zone": "UTC"}')
    records = [
        TurnRecord("t1", ChatMessage("user", "what time? 100%"), identity_key="c:u"),
        TurnRecord("t1", ChatMessage("assistant", "", (call,))),
        TurnRecord("t1", ChatMessage("tool", "12:00", tool_call_id="call1", name="current_time")),
        TurnRecord(
            "t1",
            ChatMessage("assistant", "It is noon."),
            provider="p",
            model="m",
            usage=Usage(10, 3),
            latency_ms=5.0,
            outcome="ok",
        ),
    ]
    ids = await store.turns.add(row.id, records, inbound_done=None)
    assert len(ids) == 4 and ids == sorted(ids)
    history = await store.turns.history(row.id, 0, 10)
    assert [m for _, m in history] == [r.message for r in records]
    rows = await store.turns.for_session(row.id)
    assert rows[3]["input_tokens"] == 10 and rows[3]["provider"] == "p"
    assert await store.turns.has_turn(row.id, "t1", "user")
    fresh = await store.sessions.reset("k")
    assert fresh.id != row.id and (await store.sessions.current("k")).id == fresh.id
    assert await store.sessions.count() == 2


async def test_a_failing_write_does_not_undo_others_in_its_batch(store: Store) -> None:
    def bad(conn: object) -> None:
        raise ValueError("boom")

    def bad_sql(conn: Any) -> None:
        conn.execute("INSERT INTO kv VALUES ('a', 'dup', 0)")  # the key exists by then

    results = await asyncio.gather(
        store.kv.set("a", "1"),
        store.write(bad),
        store.write(bad_sql),
        store.kv.set("b", "2"),
        return_exceptions=True,
    )
    assert isinstance(results[1], ValueError)
    assert "unique" in str(results[2]).lower()  # SQLite's and PostgreSQL's words for it
    assert await store.kv.get("a") == "1" and await store.kv.get("b") == "2"
    with pytest.raises(Exception, match=r"(?i)unique"):
        await store.write(bad_sql)  # alone: the aborted transaction is rolled back
    await store.kv.set("a", "3")
    assert await store.kv.get("a") == "3"


async def test_pairing_approve_replaces_and_revokes(store: Store) -> None:
    issued = await store.access.issue_code("ABC", "c", "u", "Ann", ttl_s=60, max_pending=5)
    assert issued is not None
    assert await store.access.approve("ABC", "owner") is not None
    assert await store.access.is_paired("c", "u")
    again = await store.access.issue_code("DEF", "c", "u", "Ann B", ttl_s=60, max_pending=5)
    assert again is not None and await store.access.approve("DEF", "owner") is not None
    assert await store.access.paired() == [("c", "u", "Ann B")]
    assert await store.access.revoke("c", "u")
    assert not await store.access.is_paired("c", "u")


async def test_delivery_progress_survives_a_reopen(store: Store) -> None:
    assert await store.inbound.insert(_inbound("d1"))
    state = DeliveryState(answer="partial answer", final=True, shown=7, refs=["m1"])
    await store.deliveries.save(("c", "d1"), state)
    got = await store.deliveries.get(("c", "d1"))
    assert got is not None and got[2].answer == "partial answer" and got[2].shown == 7
    assert got[2].refs == ["m1"] and got[2].final
    assert [d.message.id for d in await store.deliveries.unfinished()] == ["d1"]


def _job(text: str, due: float) -> NewJob:
    return NewJob(
        person_id="p1",
        identity_key="c:u",
        kind=JobKind.REMINDER,
        text=text,
        repeat="once",
        interval_s=None,
        cron=None,
        timezone="UTC",
        conversation=Conversation("c", "u", ConversationKind.DM),
        due_at=due,
        created_at=due,
    )


async def test_job_claims_are_leased_and_not_claimed_twice(store: Store) -> None:
    now = time.time()
    jobs = JobRepo(store)
    due = await jobs.insert(_job("due", now - 1), max_active=10)
    later = await jobs.insert(_job("later", now + 3600), max_active=10)
    claimed = await jobs.claim_due(now, now + 60, limit=10, overdue_before=0, busy=())
    assert [j.id for j in claimed] == [due.id]
    assert claimed[0].status is JobStatus.SENDING and claimed[0].attempt_id
    again = await jobs.claim_due(now, now + 60, limit=10, overdue_before=0, busy=())
    assert again == []
    # the lease ran out (its holder died): claimed again, with a new attempt id
    expired = await jobs.claim_due(now + 61, now + 120, limit=10, overdue_before=0, busy=())
    assert [j.id for j in expired] == [due.id] and expired[0].attempt_id != claimed[0].attempt_id
    assert await jobs.next_wake(()) is not None
    assert await jobs.cancel(later.id, "p1", now)
    # `decapod reminders list --all`: the closed jobs too, of everybody or of one person
    everything = await jobs.listing(include_closed=True)
    assert {(j.id, j.status) for j in everything} == {
        (due.id, JobStatus.SENDING),
        (later.id, JobStatus.CANCELLED),
    }
    assert await jobs.listing(include_closed=True, person_id="p1") == everything
    assert await jobs.listing(include_closed=True, person_id="p2") == []


async def test_a_claimed_job_is_given_back_or_found_cancelled(store: Store) -> None:
    now = time.time()
    jobs = JobRepo(store)
    await jobs.insert(_job("due", now - 100), max_active=10)
    [claimed] = await jobs.claim_due(now, now + 60, limit=10, overdue_before=0, busy=())
    assert await jobs.holds(claimed)
    # no room in this pass: given back, due at the occurrence it catches up on
    assert await jobs.release(claimed, due=now - 10, now=now)
    assert not await jobs.holds(claimed)
    [again] = await jobs.claim_due(now, now + 60, limit=10, overdue_before=0, busy=())
    assert again.id == claimed.id and again.due_at == now - 10 and again.attempt == 1
    assert await jobs.cancel(again.id, "p1", now)
    assert not await jobs.holds(again)


async def test_a_job_skipped_for_its_person_says_so_and_only_through_its_claim(
    store: Store,
) -> None:
    """Its person may not be answered now: a repeating job waits for its next time with its
    tries started over and the reason kept; a one-shot one is cancelled, saying why. Either
    only while the claim holds (not a job cancelled or taken over meanwhile)."""
    now = time.time()
    jobs = JobRepo(store)
    await jobs.insert(_job("repeats", now - 100), max_active=10)
    [claimed] = await jobs.claim_due(now, now + 60, limit=10, overdue_before=0, busy=())
    assert await jobs.skip(claimed, due=now + 3600, now=now)
    assert not await jobs.skip(claimed, due=now + 3600, now=now)  # the claim is gone
    [kept] = await jobs.listing(include_closed=True)
    assert (kept.status, kept.attempt, kept.due_at) == (JobStatus.PENDING, 0, now + 3600)
    assert kept.last_error == "skipped: not allowed"
    [again] = await jobs.claim_due(now + 3601, now + 3700, limit=10, overdue_before=0, busy=())
    assert await jobs.cancel(again.id, "p1", now)
    assert not await jobs.cancel_claimed(again, error="skipped: not allowed", now=now)
    once = await jobs.insert(_job("once", now + 4000), max_active=10)
    [claimed] = await jobs.claim_due(now + 4001, now + 4100, limit=10, overdue_before=0, busy=())
    assert claimed.id == once.id
    assert await jobs.cancel_claimed(claimed, error="skipped: not allowed", now=now)
    closed = {j.id: j for j in await jobs.listing(include_closed=True)}[once.id]
    assert (closed.status, closed.last_error) == (JobStatus.CANCELLED, "skipped: not allowed")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://h/db", "expected sqlite:///path or postgresql://"),
        ("postgresql://u:secret@h/db", "holds a password"),
        ("postgresql://u@h", "expected postgresql://user@host:port/database"),
        ("sqlite://", "three slashes"),
    ],
)
def test_store_url_errors_are_clear(make_config: Any, url: str, expected: str) -> None:
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match=r"store\.url") as err:
        make_config(store={"url": url})
    assert expected in str(err.value)


def test_store_url_places_the_sqlite_file(make_config: Any, home: Path, tmp_path: Path) -> None:
    assert make_config().db_path == home / "decapod.db"
    assert make_config(store={"url": "sqlite:///x.db"}).db_path == home / "x.db"
    assert make_config(store={"url": f"sqlite:///{tmp_path}/y.db"}).db_path == tmp_path / "y.db"


def test_postgres_password_comes_from_the_named_variable(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.errors import ConfigError

    config = make_config(store={"url": "postgresql://u@h/db", "password_env": "DECAPOD_PG_PW"})
    monkeypatch.delenv("DECAPOD_PG_PW", raising=False)
    with pytest.raises(ConfigError, match="DECAPOD_PG_PW is not set"):
        config.store.password()
    monkeypatch.setenv("DECAPOD_PG_PW", "s3cret")
    assert config.store.password() == "s3cret"
    with pytest.raises(ConfigError, match="password_env is for a postgresql"):
        make_config(store={"password_env": "X"})


async def test_usage_panel_and_web_ui_queries(store: Store) -> None:
    from bot.store.panel import PanelQueries
    from bot.store.webui import WebSessionRow, WebUIRepo

    await store.identities.touch(Identity("c", "u", "Ann"))
    row = await store.sessions.current("c:u")
    await store.turns.add(
        row.id,
        [
            TurnRecord("t1", ChatMessage("user", "hi"), identity_key="c:u"),
            TurnRecord(
                "t1", ChatMessage("assistant", "hello"), provider="p", model="m",
                usage=Usage(10, 3), latency_ms=5.0, outcome="ok",
            ),
        ],
        inbound_done=None,
    )  # fmt: skip
    [total] = await store.usage.totals(0)
    assert (total.model, total.input_tokens, total.output_tokens, total.turns) == ("p:m", 10, 3, 1)
    assert isinstance(total.input_tokens, int)
    assert [t.model for t in await store.usage.totals(0, person_id=total.person_id)] == ["p:m"]
    panel = PanelQueries(store)
    [usage] = await panel.usage(0)
    assert len(usage.day) == 10 and usage.day[4] == "-" and usage.input_tokens == 10
    assert [t.turn_id for t in await panel.recent_turns(5)] == ["t1"]

    web = WebUIRepo(store)
    await web.add_session("key", WebSessionRow("ann", "Ann", "owner", "x", 4e9), keep=5)
    found = await web.session("key")
    assert found is not None and found.user == "ann"
    await web.remember("c:u", "a reminder", "answer-1")
    history = await web.history("c:u", "c:u", 10)
    assert history[-1] == ("assistant", "a reminder", "answer-1")
    assert ("user", "hi", "") in history
    await web.add_passkey("cred", b"\x00\x01", 0)
    await web.add_passkey("cred", b"\x00\x02", 1)  # replaced
    [key] = await web.passkeys()
    assert bytes(key.public_key) == b"\x00\x02"
    assert await web.end_sessions_of("ann") == 1


async def test_the_answers_a_replica_missed_are_read_from_the_newest_rows(store: Store) -> None:
    """What a replica reads back after a lost LISTEN connection: the chat's answers from a
    time on, an answer of several rows joined; at most `limit` rows, and an answer whose
    first rows fall outside them is left out rather than shown cut."""
    from bot.store.webui import WebUIRepo

    row = await store.sessions.current("web:dm:u")

    async def turn(message: str, *answer: str) -> None:
        turn_id = f"web:u:{message}"
        records = [TurnRecord(turn_id, ChatMessage("user", "ask"), identity_key="web:u")]
        records += [TurnRecord(turn_id, ChatMessage("assistant", text)) for text in answer]
        await store.turns.add(row.id, records, inbound_done=None)
        await asyncio.sleep(0.01)  # a later created_at for what follows

    web = WebUIRepo(store)
    await turn("m1", "Let me look. ", "Found it.")
    since = time.time()
    await turn("m2", "Second.")
    await web.remember("u", "a reminder", "r1")
    everything = [
        ("m1", "m1", "Let me look. Found it."),
        ("m2", "m2", "Second."),
        ("r1", "", "a reminder"),
    ]
    assert await web.answers_since("web:dm:u", "u", 0.0, 100) == everything
    assert await web.answers_since("web:dm:u", "u", since, 100) == everything[1:]
    # the newest three rows hold only the end of m1's answer
    assert await web.answers_since("web:dm:u", "u", 0.0, 3) == everything[1:]
    history = await web.history("web:dm:u", "u", 3)
    assert [text for _, text, _ in history] == ["ask", "Second.", "a reminder"]


async def test_a_database_a_newer_version_migrated_is_refused_untouched(
    new_store: StoreFactory,
) -> None:
    """A downgrade: the database holds a migration this version lacks, and one of its own is
    missing. The start refuses, naming the cause, and applies nothing."""
    last = max(MIGRATIONS)

    def newer(conn: Any) -> None:
        conn.execute("DELETE FROM _migrations WHERE name = ?", (last,))
        conn.execute("INSERT INTO _migrations VALUES (?, ?)", ("m999_future", 1.0))

    async with new_store() as store:
        await store.write(newer)
    for _ in range(2):  # refused again: the first refusal changed nothing
        with pytest.raises(DatabaseTooNew, match=r"newer version of decapod.*m999_future"):
            await new_store().start()
