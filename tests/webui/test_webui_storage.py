"""The web UI's pages when the store refuses writes (SQLite's own SQLITE_READONLY, brought
about with PRAGMA query_only on the writer's connection): the person is told plainly, with the
page policy, and the database's path stays out of the answer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from bot.gateway import Gateway
from bot.webui.app import CSP
from tests.webui.conftest import (
    PASSWORD,
    SignedIn,
    base_url,
    client,
    form_token,
    until_event,
)


def _read_only(conn: Any) -> None:
    conn.execute("PRAGMA query_only = ON")


@contextlib.asynccontextmanager
async def _chat_open(make_config: Any, fake_llm: Any) -> AsyncIterator[tuple[Gateway, Any]]:
    """A gateway, its owner set up, and a chat socket past its `ready`."""
    from tests.webui.conftest import gateway_config, page_csrf, set_up
    from tests.webui.test_webui_chat import _open

    async with Gateway(gateway_config(make_config, fake_llm)) as gw, client() as http:
        await set_up(http, gw)
        async with http.get(base_url(gw) + "/") as resp:
            signed_in = SignedIn(http, base_url(gw), page_csrf(await resp.text()))
        ws = await _open(signed_in)
        await until_event(ws, "ready")
        yield gw, ws


async def test_a_login_or_a_panel_form_while_storage_refuses_writes_says_so(
    gateway: Gateway, signed_in: SignedIn
) -> None:
    base = base_url(gateway)
    await gateway.store.write(_read_only)
    async with client() as http:
        async with http.get(base + "/login") as resp:
            token = form_token(await resp.text())
        login = await http.post(
            base + "/login", data={"csrf": token, "password": PASSWORD}, allow_redirects=False
        )
        async with login:
            answers = [(login.status, login.headers.copy(), await login.text())]
    async with await signed_in.post("/panel/reminders/create", text="in 5 minutes tea") as resp:
        answers.append((resp.status, resp.headers.copy(), await resp.text()))
    for status, headers, text in answers:
        assert status == 503 and headers["Retry-After"]
        assert "Storage is read-only" in text and "decapod.db" not in text
        assert headers["Content-Security-Policy"] == CSP


async def test_a_chat_message_sent_while_storage_refuses_writes_is_answered_once_it_is_back(
    make_config: Any, fake_llm: Any, monkeypatch: Any
) -> None:
    """Another process holds the database's lock (a backup, a CLI command) when a chat
    message comes: the page is told it waits, and it is stored and answered once the lock
    is let go, though the page (which saw no ack, its socket still open) sends nothing
    again."""
    from bot.store import sqlite as store_sqlite
    from tests.core.test_storage_failures import _locked
    from tests.fakes.llm import Reply
    from tests.webui.test_webui_chat import _text

    monkeypatch.setattr(store_sqlite, "BUSY_TIMEOUT_MS", 200)  # the test waits less
    fake_llm.push(Reply(text="Got it."))
    async with _chat_open(make_config, fake_llm) as (gw, ws):
        holder = _locked(gw)
        try:
            await ws.send_json({"type": "send", "id": "wait-0000001", "text": "note this"})
            said = await until_event(ws, "error")
            assert said[-1]["id"] == "wait-0000001" and "busy" in said[-1]["text"]
            assert said[-1]["wait"] is True  # the page keeps its note until the ack
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        events = await until_event(ws, "done")
        await ws.close()
    assert {"type": "ack", "id": "wait-0000001"} in events
    assert _text(events, "wait-0000001") == "Got it."


async def test_a_chat_message_waiting_for_storage_is_let_go_when_the_page_drops(
    make_config: Any, fake_llm: Any, monkeypatch: Any
) -> None:
    """The page's connection breaks (a closed laptop, a lost network) while its message
    waits for storage: nothing reads the socket then, so only the connection tells it is
    gone. The wait ends there: the page sends the message again, under its id, when it is
    back; storing it meanwhile would answer a page that is not there."""
    import asyncio

    from bot.store import sqlite as store_sqlite
    from bot.webui import chat
    from tests.core.test_storage_failures import _locked

    monkeypatch.setattr(store_sqlite, "BUSY_TIMEOUT_MS", 200)
    monkeypatch.setattr(chat, "SUBMIT_RETRY_MOST_S", 1.5)  # tries again often
    async with _chat_open(make_config, fake_llm) as (gw, ws):
        holder = _locked(gw)
        try:
            await ws.send_json({"type": "send", "id": "drop-0000001", "text": "note this"})
            await until_event(ws, "error")
            ws._conn.transport.abort()  # no close frame: the connection just ends
            await asyncio.sleep(2.5)  # past a try that sees it gone
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await asyncio.sleep(4.0)  # past the tries a handler still waiting would make
        assert fake_llm.calls(path="/v1/chat/completions") == []
