"""The web chat's answers whose announcement the store refused (bot/cluster/web_answers.py):
one is sent again once its turn's rows are stored, also when it is the turn's second
message (its id is not the page's message id), and the chat's later ones wait behind it,
also one said when the store takes writes again, and behind one whose re-send fails; one
whose announcement keeps failing neither holds up other chats nor is tried forever;
past the bound the oldest kept is given up, saying so; and after the stop no catch-up
starts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.cluster import web_answers
from bot.cluster.bus import Bus
from bot.cluster.web_answers import TOPIC, SharedWebAnswers
from bot.store.pg_store import PgStore
from bot.store.webui import web_turn_id
from tests.cluster.harness import database_admin, pg_store, until

pytestmark = pytest.mark.replicas


class Pages:
    """The web channel as the shared answers see it: no page open here, no answer held."""

    name = "web"
    relay: Any = None

    def relayed(self, answer: dict[str, Any]) -> None:
        raise AssertionError(f"no other replica announces here: {answer}")

    def holds(self, answer_id: str) -> bool:
        return False

    def listening(self) -> list[str]:
        return []


@contextlib.asynccontextmanager
async def _refusing(store: PgStore, pg_url: str) -> AsyncIterator[None]:
    """The store's writer connection cut and the database closed to new connections: its
    writes are refused after `reconnect_wait_s` (the LISTEN connection stays)."""
    store.reconnect_wait_s = 0.3
    async with database_admin(pg_url) as admin:
        await admin.allow_connections(False)
        await admin.cut(store._wconn.raw.info.backend_pid)  # type: ignore[attr-defined]
        yield


@contextlib.asynccontextmanager
async def _replica(pg_url: str) -> AsyncIterator[tuple[SharedWebAnswers, PgStore, list[str]]]:
    """A replica's shared answers, and what another replica's LISTEN connection hears."""
    heard: list[str] = []
    listener = Bus(pg_url, None)
    listener.subscribe(TOPIC, heard.append)
    async with pg_store(pg_url) as store:
        await listener.start()
        shared = SharedWebAnswers(Pages(), Bus(pg_url, None), store, "a")
        try:
            yield shared, store, heard
        finally:
            await shared.stop()
            await listener.stop()


def _turn_stored(chat: str, message_id: str) -> Any:
    def op(conn: Any) -> None:
        session = conn.execute(
            "INSERT INTO sessions (key, created_at) VALUES (?, 0) RETURNING id", (f"web:{chat}",)
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO turns (session_id, turn_id, role, content, created_at) "
            "VALUES (?, ?, 'assistant', 'Stored.', 0)",
            (session, web_turn_id(chat, message_id)),
        )

    return op


def _ids(heard: list[str]) -> list[str]:
    return [json.loads(note)[1] for note in heard]


async def test_a_turns_second_answer_kept_is_announced_once_the_turn_is_stored(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A turn's second message has an id of its own; its rows are stored under the page's
    message it answers, and that is what the kept answer waits for (not the ten minutes)."""
    monkeypatch.setattr(web_answers, "RESEND_S", (0.2,))
    async with _replica(pg_url) as (shared, store, heard):
        second = {"id": "5d41402abc4b2a76", "chat": "alice", "re": "msg-1", "text": "And more."}
        async with _refusing(store, pg_url):
            await shared.announce(second)
        await asyncio.sleep(1.0)  # a few tries: its turn's rows are not stored yet
        assert heard == []
        await store.write(_turn_stored("alice", "msg-1"))
        await until(lambda: heard, timeout=30)
        assert _ids(heard) == ["5d41402abc4b2a76"]


async def test_a_later_answer_of_the_chat_waits_behind_one_waiting_for_its_rows(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reminder answers no message and waits for no rows, but the other replicas' pages
    must not show it before the answer kept ahead of it; another chat's goes at once."""
    monkeypatch.setattr(web_answers, "RESEND_S", (0.2,))
    async with _replica(pg_url) as (shared, store, heard):
        answer = {"id": "msg-1", "chat": "alice", "re": "msg-1", "text": "The answer."}
        reminder = {"id": "rem-1", "chat": "alice", "re": "", "text": "A reminder."}
        bobs = {"id": "rem-2", "chat": "bob", "re": "", "text": "Bob's reminder."}
        async with _refusing(store, pg_url):
            for kept in (answer, reminder, bobs):
                await shared.announce(kept)
        await until(lambda: heard, timeout=30)
        await asyncio.sleep(1.0)  # a few tries: the answer's rows are not stored yet
        assert _ids(heard) == ["rem-2"]
        await store.write(_turn_stored("alice", "msg-1"))
        await until(lambda: len(heard) == 3, timeout=30)
        assert _ids(heard) == ["rem-2", "msg-1", "rem-1"]


async def test_an_answer_whose_announcement_keeps_failing_holds_up_no_other_and_is_given_up(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(web_answers, "RESEND_S", (0.2,))
    monkeypatch.setattr(web_answers, "RESEND_ANYWAY_S", 1.0)
    # a notification's payload is under 8000 bytes: this one is refused every time
    never = {"id": "x" * 9000, "chat": "alice", "re": "", "text": "Never fits."}
    sent_outside = {"id": "msg-2", "chat": "bob", "re": "", "text": "Sent outside a turn."}
    with caplog.at_level(logging.WARNING, logger="decapod.cluster"):
        async with _replica(pg_url) as (shared, store, heard):
            await shared.announce(never)
            async with _refusing(store, pg_url):
                await shared.announce(sent_outside)
            await until(lambda: heard, timeout=30)
            assert _ids(heard) == ["msg-2"]
            await until(lambda: "given up after" in caplog.text, timeout=30)
            assert shared._resending is not None
            await asyncio.wait_for(shared._resending, 30)  # nothing left to try


async def test_a_fresh_answer_of_a_chat_waits_behind_its_answer_kept(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store takes writes again, but the chat's kept answer still waits for its rows: a
    reminder said now goes after it, not ahead."""
    monkeypatch.setattr(web_answers, "RESEND_S", (0.2,))
    async with _replica(pg_url) as (shared, store, heard):
        answer = {"id": "msg-1", "chat": "alice", "re": "msg-1", "text": "The answer."}
        reminder = {"id": "rem-1", "chat": "alice", "re": "", "text": "A reminder."}
        async with _refusing(store, pg_url):
            await shared.announce(answer)
        await shared.announce(reminder)
        await asyncio.sleep(1.0)  # a few tries: the answer's rows are not stored yet
        assert heard == []
        await store.write(_turn_stored("alice", "msg-1"))
        await until(lambda: len(heard) == 2, timeout=30)
        assert _ids(heard) == ["msg-1", "rem-1"]


async def test_an_answer_whose_announcement_fails_again_holds_its_chat(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Until it is given up, the chat's later answers wait behind it."""
    monkeypatch.setattr(web_answers, "RESEND_S", (0.2,))
    monkeypatch.setattr(web_answers, "RESEND_ANYWAY_S", 1.0)
    never = {"id": "x" * 9000, "chat": "alice", "re": "", "text": "Never fits."}
    later = {"id": "rem-1", "chat": "alice", "re": "", "text": "A reminder."}
    with caplog.at_level(logging.WARNING, logger="decapod.cluster"):
        async with _replica(pg_url) as (shared, _store, heard):
            await shared.announce(never)
            await asyncio.sleep(1.0)  # kept later: not given up with it
            await shared.announce(later)
            await until(lambda: heard, timeout=30)
            assert "given up after" in caplog.text, "it went before the one kept ahead"
            assert _ids(heard) == ["rem-1"]


async def test_past_the_bound_the_answer_kept_longest_ago_is_given_up(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An answer kept again counts from then: the one kept before it goes first."""
    monkeypatch.setattr(web_answers, "_MAX_OPEN", 2)
    monkeypatch.setattr(web_answers, "RESEND_S", (60.0,))  # no try meanwhile

    def said(answer_id: str) -> dict[str, str]:
        return {"id": answer_id, "chat": "alice", "re": answer_id, "text": "Hello."}

    with caplog.at_level(logging.WARNING, logger="decapod.cluster"):
        async with _replica(pg_url) as (shared, store, _heard), _refusing(store, pg_url):
            for answer_id in ("msg-a", "msg-b", "msg-a", "msg-c"):
                await shared.announce(said(answer_id))
    assert "msg-b given up" in caplog.text
    assert "msg-a given up" not in caplog.text


async def test_no_catch_up_starts_after_the_stop(pg_url: str) -> None:
    """The bus may be back after the web server stopped: nobody would end that catch-up."""
    async with _replica(pg_url) as (shared, _store, _heard):
        await shared.stop()
        await shared.catch_up()
        assert not [t for t in asyncio.all_tasks() if t.get_name() == "web-catch-up"]
