"""The web UI's pages when the store refuses writes (SQLite's own SQLITE_READONLY, brought
about with PRAGMA query_only on the writer's connection): the person is told plainly, with the
page policy, and the database's path stays out of the answer."""

from __future__ import annotations

from typing import Any

from bot.gateway import Gateway
from bot.webui.app import CSP
from tests.webui.conftest import PASSWORD, SignedIn, base_url, client, form_token


def _read_only(conn: Any) -> None:
    conn.execute("PRAGMA query_only = ON")


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
