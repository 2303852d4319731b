"""A chat socket lives only as long as its login: logout, a revoked guest, expiry, or a login
the store no longer knows closes it with 4401, and nothing more of the conversation reaches it
(on a shared computer the next person must not read along). Other logins keep receiving."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from bot.gateway import Gateway
from bot.messages import Conversation, ConversationKind, OutboundMessage
from tests.fakes.llm import FakeLLM, Reply
from tests.webui.conftest import PASSWORD, SignedIn, client, form_token, page_csrf, until_event
from tests.webui.test_webui_chat import _open, _text

WAIT_S = 30.0


async def _push(gw: Gateway, text: str) -> None:
    """A message to the owner's web chat from outside a turn (a reminder, a notice)."""
    conversation = Conversation("web", "owner", ConversationKind.DM)
    await gw.channels["web"].send(OutboundMessage(conversation, text))


async def _next_is_signed_out(ws: aiohttp.ClientWebSocketResponse) -> None:
    """The socket's next frame is its close with 4401: nothing was delivered before it."""
    msg = await ws.receive(timeout=WAIT_S)
    # the frame the server sent (the page's close event shows its code); the client's own
    # close_code can read 1006 when the server has dropped the connection before its reply
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 4401), msg


async def _log_in(http: aiohttp.ClientSession, base: str) -> SignedIn:
    """A second login of the owner, from another browser."""
    async with http.get(base + "/login") as resp:
        token = form_token(await resp.text())
    async with http.post(base + "/login", data={"csrf": token, "password": PASSWORD}) as resp:
        assert resp.status == 200, await resp.text()
        return SignedIn(http, base, page_csrf(await resp.text()))


async def test_logout_closes_that_logins_sockets_and_another_login_still_receives(
    gateway: Gateway, signed_in: SignedIn, fake_llm: FakeLLM
) -> None:
    async with client() as other_http:
        other = await _log_in(other_http, signed_in.base)
        left = await _open(signed_in)
        await until_event(left, "ready")
        kept = await _open(other)
        await until_event(kept, "ready")
        async with await signed_in.post("/logout") as resp:
            assert resp.status == 303
        # a push and an answer for the same person, after the logout
        await _push(gateway, "feed the cat")
        fake_llm.push(Reply(text="Done, owner."))
        await kept.send_json({"type": "send", "id": "kept-0000001", "text": "still here"})
        pushed = await until_event(kept, "done")
        assert _text(pushed, pushed[0]["id"]) == "feed the cat"
        assert _text(await until_event(kept, "done"), "kept-0000001") == "Done, owner."
        await _next_is_signed_out(left)
        await kept.close()


async def test_a_login_that_expires_closes_its_socket(
    gateway: Gateway, signed_in: SignedIn
) -> None:
    # the handshake, hello and history must all finish before the expiry: a wide margin,
    # so a busy machine does not fail this for the wrong reason
    soon = time.time() + 8.0
    await gateway.store.write(
        lambda c: c.execute("UPDATE web_sessions SET expires_at = ?", (soon,))
    )
    ws = await _open(signed_in)
    await until_event(ws, "ready")
    assert time.time() < soon, "the socket opened only after the login had expired"
    await _next_is_signed_out(ws)  # at the expiry, with nothing sent
    assert time.time() >= soon - 0.1
    await _push(gateway, "after the expiry")  # nobody is listening any more
    assert ws.closed


async def test_a_login_the_store_dropped_closes_its_socket_at_the_next_check(
    gateway: Gateway, signed_in: SignedIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logins ended some other way (the oldest of too many goes) are caught by the socket's
    periodic look-up, not by a store read per frame."""
    monkeypatch.setattr("bot.webui.chat.RECHECK_S", 0.2)
    ws = await _open(signed_in)
    await until_event(ws, "ready")
    await gateway.store.write(lambda c: c.execute("DELETE FROM web_sessions"))
    await _next_is_signed_out(ws)


async def test_a_store_that_cannot_answer_the_check_leaves_the_chat_working(
    gateway: Gateway, signed_in: SignedIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The periodic look-up fails while the store cannot read the logins; the page keeps
    receiving, and once the store answers again the next look-up still ends a dropped login."""
    monkeypatch.setattr("bot.webui.chat.RECHECK_S", 0.2)
    ws = await _open(signed_in)
    await until_event(ws, "ready")
    await gateway.store.write(lambda c: c.execute("ALTER TABLE web_sessions RENAME TO away"))
    await asyncio.sleep(1.0)  # several look-ups fail meanwhile
    await _push(gateway, "while the store was away")
    pushed = await until_event(ws, "done")
    assert _text(pushed, pushed[0]["id"]) == "while the store was away"
    await gateway.store.write(lambda c: c.execute("ALTER TABLE away RENAME TO web_sessions"))
    await gateway.store.write(lambda c: c.execute("DELETE FROM web_sessions"))
    await _next_is_signed_out(ws)


async def test_revoking_a_guest_closes_their_open_chat(make_config: Any, fake_llm: FakeLLM) -> None:
    from tests.webui.conftest import gateway_config
    from tests.webui.test_webui_guests import _join, _link, _owner

    config = gateway_config(make_config, fake_llm, webui={"guest_chat": True})
    async with Gateway(config) as gw, client() as owner_http, client() as guest_http:
        owner = await _owner(owner_http, gw)
        assert (await _join(guest_http, await _link(owner, "Eve"))).status == 303
        async with guest_http.get(owner.base + "/") as resp:
            guest = SignedIn(guest_http, owner.base, page_csrf(await resp.text()))
        ws = await _open(guest)
        await until_event(ws, "ready")
        (guest_id,) = [u for c, u, _ in await gw.store.access.paired() if c == "web"]
        assert (await owner.post("/panel/guests/revoke", user=guest_id)).status == 303
        await _next_is_signed_out(ws)
