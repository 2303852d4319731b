"""Chat for people the owner invites with a one-time pairing link (`[webui] guest_chat`): a
chat and a person of their own, the role `user`, never the panel; off by default."""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.gateway import Gateway
from tests.fakes.llm import FakeLLM, Reply
from tests.webui.conftest import (
    SignedIn,
    base_url,
    client,
    form_token,
    gateway_config,
    page_csrf,
    set_up,
    until_event,
)
from tests.webui.test_webui_chat import _open, _text, _upload


@pytest.fixture
async def guest_gw(make_config: Any, fake_llm: FakeLLM) -> AsyncIterator[Gateway]:
    config = gateway_config(make_config, fake_llm, webui={"guest_chat": True})
    async with Gateway(config) as gw:
        yield gw


async def _owner(http: Any, gw: Gateway) -> SignedIn:
    await set_up(http, gw)
    async with http.get(base_url(gw) + "/") as resp:
        return SignedIn(http, base_url(gw), page_csrf(await resp.text()))


async def _link(owner: SignedIn, name: str) -> str:
    resp = await owner.post("/panel/guests/invite", name=name)
    assert resp.status == 200
    found = re.search(r'id="invite-link">([^<]+)<', await resp.text())
    assert found
    return found.group(1).replace("&amp;", "&")


async def _join(http: Any, link: str) -> Any:
    async with http.get(link) as resp:
        assert resp.status == 200
        page = await resp.text()
    invite = link.split("invite=", 1)[1]
    base = link.split("/join", 1)[0]
    return await http.post(
        base + "/join", data={"csrf": form_token(page), "invite": invite}, allow_redirects=False
    )


async def test_guest_chat_is_off_by_default(gateway: Gateway, signed_in: SignedIn) -> None:
    assert "Guest chat is off" in await signed_in.get("/panel/guests")
    resp = await signed_in.post("/panel/guests/invite", name="Eve")
    assert resp.status == 400
    async with client() as http, http.get(signed_in.base + "/join?invite=whatever") as resp:
        assert resp.status == 404


async def test_an_invited_person_chats_as_a_user_and_cannot_open_the_panel(
    guest_gw: Gateway, fake_llm: FakeLLM
) -> None:
    async with client() as owner_http, client() as guest_http:
        owner = await _owner(owner_http, guest_gw)
        link = await _link(owner, "<b>Eve</b>")
        assert "<b>Eve</b>" not in await owner.get("/panel/guests")  # the name is text
        resp = await _join(guest_http, link)
        assert resp.status == 303 and resp.headers["Location"] == "/"
        async with guest_http.get(owner.base + "/") as resp:
            page = await resp.text()
        assert 'id="chat"' in page and 'href="/panel"' not in page
        guest = SignedIn(guest_http, owner.base, page_csrf(page))
        for path in ("/panel", "/panel/memory", "/panel/config"):
            async with guest_http.get(owner.base + path, allow_redirects=False) as resp:
                assert resp.status == 403, path
        code = await guest_gw.store.access.issue_code("GUEST234", "tg", "9", "Mal", 3600, 100)
        assert code is not None
        resp = await guest.post("/panel/pairing", code="GUEST234", action="approve")
        assert resp.status == 403
        assert not await guest_gw.store.access.is_paired("tg", "9")

        fake_llm.push(Reply(text="Hi Eve."))
        ws = await _open(guest)
        assert (await until_event(ws, "ready"))[0]["items"] == []  # not the owner's history
        await ws.send_json({"type": "send", "id": "guest-000001", "text": "hello"})
        assert _text(await until_event(ws, "done"), "guest-000001") == "Hi Eve."
        # an owner-only command is refused to a user
        await ws.send_json({"type": "send", "id": "guest-000002", "text": "/pair GUEST234"})
        refused = _text(await until_event(ws, "done"), "guest-000002")
        assert "Approved" not in refused and "No pending" not in refused
        await ws.close()
        assert not await guest_gw.store.access.is_paired("tg", "9")
        (guest_id,) = [u for c, u, _ in await guest_gw.store.access.paired() if c == "web"]
        assert guest_gw.access.role_of_key(f"web:{guest_id}") == "user"
        assert guest_gw.access.role_of_key("web:owner") == "owner"
        system = fake_llm.calls(path="/v1/chat/completions")[-1]
        assert "hello" in str(system.body)

        # the link was used up
        async with client() as other, other.get(link) as resp:
            assert resp.status == 404
        # revoking signs the guest out
        resp = await owner.post("/panel/guests/revoke", user=guest_id)
        assert resp.status == 303
        async with guest_http.get(owner.base + "/", allow_redirects=False) as resp:
            assert resp.status == 303


async def test_turning_guest_chat_off_closes_their_logins(
    make_config: Any, fake_llm: FakeLLM
) -> None:
    config = gateway_config(make_config, fake_llm, webui={"guest_chat": True})
    async with client() as owner_http, client() as guest_http:
        async with Gateway(config) as gw:
            owner = await _owner(owner_http, gw)
            resp = await _join(guest_http, await _link(owner, "Eve"))
            assert resp.status == 303
        off = gateway_config(make_config, fake_llm, webui={"guest_chat": False})
        async with Gateway(off) as gw:
            async with guest_http.get(base_url(gw) + "/", allow_redirects=False) as resp:
                assert resp.status == 303
            async with owner_http.get(base_url(gw) + "/", allow_redirects=False) as resp:
                assert resp.status == 200


async def test_a_guest_who_uploads_past_the_quota_is_refused_and_others_still_upload(
    make_config: Any, fake_llm: FakeLLM
) -> None:
    from bot.webui.uploads import UPLOAD_DIR

    quota = int(0.1 * 1024 * 1024)
    config = gateway_config(
        make_config, fake_llm, webui={"guest_chat": True, "upload_quota_mb": 0.1}
    )
    uploads = config.home / UPLOAD_DIR
    refused = (
        "upload limit reached: the files you uploaded may take up 0.1 MB at most; uploads "
        "are cleared a day after they were sent, so there is room again then"
    )
    async with client() as owner_http, client() as guest_http:
        async with Gateway(config) as gw:
            owner = await _owner(owner_http, gw)
            resp = await _join(guest_http, await _link(owner, "Eve"))
            assert resp.status == 303
            async with guest_http.get(owner.base + "/") as resp:
                guest = SignedIn(guest_http, owner.base, page_csrf(await resp.text()))
            for n in range(2):
                resp = await _upload(guest, b"g" * 40_000, f"g{n}.bin", "text/plain")
                assert resp.status == 200, await resp.text()
            kept = sorted(uploads.iterdir())
            # the third would pass the quota: refused while it streams in, and not kept
            resp = await _upload(guest, b"g" * 40_000, "g2.bin", "text/plain")
            assert resp.status == 413 and await resp.text() == refused
            assert sorted(uploads.iterdir()) == kept
            # what still fits is taken; then the quota is full and the next one is refused
            resp = await _upload(guest, b"g" * (quota - 80_000), "fits.bin", "text/plain")
            assert resp.status == 200, await resp.text()
            kept = sorted(uploads.iterdir())
            resp = await _upload(guest, b"g", "one-more.txt", "text/plain")
            assert resp.status == 413 and await resp.text() == refused
            assert sorted(uploads.iterdir()) == kept
            # the quota is the guest's own: the owner still uploads
            resp = await _upload(owner, b"o" * 40_000, "mine.bin", "text/plain")
            assert resp.status == 200, await resp.text()
        # after a restart, the uploads kept on disk still count
        async with Gateway(config) as gw:
            again = SignedIn(guest_http, base_url(gw), guest.csrf)
            resp = await _upload(again, b"g", "after-restart.txt", "text/plain")
            assert resp.status == 413 and await resp.text() == refused
            # a day later the uploads are cleared, and with them the quota's use
            day_ago = time.time() - 86_401
            for path in uploads.iterdir():
                os.utime(path, (day_ago, day_ago))
            gw.channels["web"].uploads.prune()  # type: ignore[attr-defined]
            resp = await _upload(again, b"g" * 40_000, "next-day.bin", "text/plain")
            assert resp.status == 200, await resp.text()


async def test_a_guest_is_a_user_in_a_turn_process_too(make_config: Any, fake_llm: FakeLLM) -> None:
    """With `gateway.turn_processes`, the guest's turns run in a process that serves no HTTP
    itself: its web chat is still the guests' chat there, never the operator's console, so
    an owner-only command stays refused and the model is asked as a user."""
    config = gateway_config(
        make_config,
        fake_llm,
        webui={"guest_chat": True},
        gateway={"turn_processes": 2, "shutdown_grace_s": 1},
    )
    async with Gateway(config) as gw, client() as owner_http, client() as guest_http:
        owner = await _owner(owner_http, gw)
        assert (await _join(guest_http, await _link(owner, "Eve"))).status == 303
        async with guest_http.get(owner.base + "/") as resp:
            guest = SignedIn(guest_http, owner.base, page_csrf(await resp.text()))
        code = await gw.store.access.issue_code("GUEST234", "tg", "9", "Mal", 3600, 100)
        assert code is not None
        ws = await _open(guest)
        await until_event(ws, "ready")
        await ws.send_json({"type": "send", "id": "guest-000001", "text": "/pair GUEST234"})
        refused = _text(await until_event(ws, "done"), "guest-000001")
        assert "Approved" not in refused and "No pending" not in refused
        await ws.close()
        assert not await gw.store.access.is_paired("tg", "9")
