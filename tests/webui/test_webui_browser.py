"""The web UI in a real headless Chromium (Debian's `chromium`, driven by Playwright): setup
code -> password -> a streamed answer -> approve a pairing -> forget a memory -> cancel a
reminder -> log out; hostile model output and names stay text; cookie flags and CSRF hold
against a page of another origin; a WebSocket dropped mid-answer resumes exactly.

Screenshots of each page go to the test's tmp folder for review.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, WebSocketRoute, expect

from bot.gateway import Gateway
from bot.messages import Identity
from tests.fakes.llm import FakeLLM, Reply
from tests.webui.conftest import (
    CHROMIUM,
    PASSWORD,
    add_authenticator,
    base_url,
    gateway_config,
    record_inbound,
    serving,
)

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="the browser tests need Chromium: apt-get install chromium"
    ),
    pytest.mark.slow,
]
HOSTILE = (
    "Here you go <img src=x onerror=\"alert('img')\"> and <script>alert('script')</script>\n\n"
    "[click me](javascript:alert('link')) [docs](https://example.org/docs)\n\n"
    "```html\n<b onmouseover=alert('code')>bold</b>\n```"
)
LONG = " ".join(f"word{i}" for i in range(150))


@pytest.fixture
async def gw(make_config: Any, fake_llm: FakeLLM) -> AsyncIterator[Gateway]:
    config = gateway_config(make_config, fake_llm, memory={"enabled": True, "embedders": []})
    async with Gateway(config) as gateway:
        yield gateway


class Dialogs:
    """Every alert/confirm a page opens: an XSS that ran would show up here."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        page.on("dialog", self._on_dialog)

    async def _on_dialog(self, dialog: Any) -> None:
        self.seen.append(dialog.message)
        await dialog.dismiss()


async def _set_up(page: Page, gw: Gateway, shots: Path) -> None:
    await page.goto(base_url(gw) + "/")
    await page.screenshot(path=shots / "1-welcome.png", full_page=True)
    await page.fill("#code", gw.setup_code or "")
    await page.fill("#password", PASSWORD)
    await page.fill("#confirm", PASSWORD)
    await page.click("#welcome button[type=submit]")
    await expect(page.locator("#admin-token")).to_be_visible()
    await page.screenshot(path=shots / "2-set-up.png", full_page=True)
    await page.click("#to-chat")
    await expect(page.locator("#status")).to_have_text("connected")


async def _set_up_with_sockets(
    browser: Browser, gw: Gateway, shots: Path
) -> tuple[Page, list[WebSocketRoute]]:
    """A page set up as `_set_up` does, and its sockets, each passed through to the gateway
    and kept, newest last, so that a test can drop the connection as a network would."""
    page = await browser.new_page()
    routes: list[WebSocketRoute] = []

    def through(ws: WebSocketRoute) -> None:
        routes.append(ws)
        ws.connect_to_server()

    await page.route_web_socket("**/ws*", through)
    await _set_up(page, gw, shots)
    return page, routes


async def _ask(page: Page, text: str) -> Any:
    answers = page.locator(".msg.assistant.done")
    before = await answers.count()
    await page.fill("#input", text)
    await page.press("#input", "Enter")
    await expect(answers).to_have_count(before + 1, timeout=30_000)
    return answers.nth(before)


async def test_the_owner_flow_end_to_end(
    browser: Browser, gw: Gateway, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    shots = tmp_path
    page = await browser.new_page(viewport={"width": 1100, "height": 760})
    dialogs = Dialogs(page)
    await _set_up(page, gw, shots)

    fake_llm.push(Reply(text="Hello! Here is **bold** and `code`:\n\n```python\nprint('hi')\n```"))
    answer = await _ask(page, "hello there")
    await expect(answer.locator("strong")).to_have_text("bold")
    await expect(answer.locator("pre code")).to_have_text("print('hi')")
    await page.screenshot(path=shots / "3-chat.png", full_page=True)

    # a pairing request from someone whose name is an attack
    code = await gw.store.access.issue_code(
        "PAIRME23", "tg", "777", "<img src=x onerror=\"alert('name')\">Eve", 3600, 100
    )
    assert code is not None
    await page.click("nav >> text=Panel")
    await expect(page.locator("#pending .name")).to_contain_text("<img src=x")
    assert await page.locator("#pending img").count() == 0
    await page.screenshot(path=shots / "4-panel.png", full_page=True)
    await page.click("[data-approve=PAIRME23]")
    await expect(page.locator("#note")).to_contain_text("approved")
    assert await gw.store.access.is_paired("tg", "777")

    memory = gw.deps.memory
    assert memory is not None
    person = await gw.store.identities.touch(Identity("tg", "777", "Eve"))
    item = await memory.save(person, "Eve's door code is 4321")
    await page.goto(f"{base_url(gw)}/panel/memory?person={person}")
    await expect(page.locator(".memory-text")).to_have_text("Eve's door code is 4321")
    await page.screenshot(path=shots / "5-memory.png", full_page=True)
    await page.click(f"[data-forget='{item}']")
    await expect(page.locator("#note")).to_contain_text("forgot 1")
    assert await memory.repo.items(person) == []

    await page.click(".tabs >> text=Reminders")
    await page.fill("#reminder-text", "in 3 hours call the vet")
    await page.click("#new-reminder button")
    await expect(page.locator("#jobs")).to_contain_text("call the vet")
    await page.screenshot(path=shots / "6-reminders.png", full_page=True)
    await page.click("[data-cancel]")
    await expect(page.locator("#note")).to_have_text("cancelled")
    await expect(page.locator("#jobs")).to_contain_text("No open reminders")

    for href in (
        "/panel/usage",
        "/panel/sessions",
        "/panel/providers",
        "/panel/workspaces",
        "/panel/skills",
        "/panel/mcp",
        "/panel/config",
    ):
        await page.goto(base_url(gw) + href)
        await page.screenshot(path=shots / f"7-{href.rsplit('/', 1)[1]}.png", full_page=True)

    await page.click("#logout")
    await expect(page).to_have_url(base_url(gw) + "/login")
    await page.screenshot(path=shots / "8-logged-out.png", full_page=True)
    await page.goto(base_url(gw) + "/panel")
    await expect(page).to_have_url(base_url(gw) + "/login")
    assert dialogs.seen == []


async def test_hostile_model_output_stays_text(
    browser: Browser, gw: Gateway, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    page = await browser.new_page()
    dialogs = Dialogs(page)
    await _set_up(page, gw, tmp_path)
    fake_llm.push(Reply(text=HOSTILE))
    answer = await _ask(page, "say something nasty")
    await expect(answer).to_contain_text("<img src=x")
    await expect(answer).to_contain_text("<script>alert('script')</script>")
    assert await page.locator("#messages img, #messages script, #messages b").count() == 0
    links = answer.locator("a")
    await expect(links).to_have_count(1)  # the javascript: one stayed text
    assert await links.first.get_attribute("href") == "https://example.org/docs"
    await expect(answer.locator("pre code")).to_contain_text("<b onmouseover")
    await page.reload()  # the same text from the stored history
    await expect(page.locator(".msg.assistant")).to_contain_text("<script>alert('script')")
    assert await page.locator("#messages img, #messages script, #messages b").count() == 0
    await page.hover("#messages pre")
    await page.screenshot(path=tmp_path / "xss.png", full_page=True)
    assert dialogs.seen == []


async def test_cookie_flags_and_csrf_from_another_origin(
    browser: Browser, gw: Gateway, tmp_path: Path
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await _set_up(page, gw, tmp_path)
    cookies = {c["name"]: c for c in await context.cookies()}
    session = cookies["decapod_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""  # script cannot read it

    # a page on another origin posts to the gateway: no cookie goes with it, and no token
    async def evil(request: web.Request) -> web.Response:
        return web.Response(
            text=f'<form method="post" action="{base_url(gw)}/logout">'
            '<button id="go">win a prize</button></form>',
            content_type="text/html",
        )

    app = web.Application()
    app.router.add_get("/", evil)
    async with serving(app) as port:
        attacker = await context.new_page()
        await attacker.goto(f"http://localhost:{port}/")
        async with attacker.expect_response(base_url(gw) + "/logout") as info:
            await attacker.click("#go")
        assert (await info.value).status == 403
    await page.goto(base_url(gw) + "/panel")
    await expect(page).to_have_url(base_url(gw) + "/panel")  # still signed in


async def test_a_socket_dropped_mid_answer_resumes_exactly(
    browser: Browser, gw: Gateway, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    page, routes = await _set_up_with_sockets(browser, gw, tmp_path)
    fake_llm.push(Reply(text=LONG, chunk_delay_s=0.03))
    await page.fill("#input", "talk for a while")
    await page.press("#input", "Enter")
    await expect(page.locator(".msg.assistant.streaming")).to_have_count(1, timeout=30_000)
    await routes[-1].close()  # the connection drops mid-answer
    await expect(page.locator("#status")).to_have_text("reconnecting…")
    await expect(page.locator(".msg.assistant.done")).to_have_count(1, timeout=30_000)
    assert len(routes) >= 2
    await expect(page.locator(".msg.assistant")).to_have_count(1)
    await expect(page.locator(".msg.assistant")).to_have_text(LONG)
    await expect(page.locator(".msg.user")).to_have_count(1)
    assert len(fake_llm.calls(path="/v1/chat/completions")) == 1
    await page.screenshot(path=tmp_path / "resumed.png", full_page=True)


async def test_a_file_picked_in_the_page_reaches_the_gateway(
    browser: Browser, make_config: Any, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    from tests.media.files import png

    config = gateway_config(make_config, fake_llm, media={"vision_models": ["test-model"]})
    async with Gateway(config) as gw:
        await _picked_file_reaches_the_model(browser, gw, fake_llm, tmp_path, png(64, 48))


async def _picked_file_reaches_the_model(
    browser: Browser, gw: Gateway, fake_llm: FakeLLM, tmp_path: Path, picture: bytes
) -> None:
    from bot.messages import InboundMessage

    page = await browser.new_page()
    await _set_up(page, gw, tmp_path)
    received = record_inbound(gw)
    await page.set_input_files(
        "#file", files=[{"name": "cat.png", "mimeType": "image/png", "buffer": picture}]
    )
    await expect(page.locator("#files .attachment")).to_have_text("📎 cat.png")
    fake_llm.push(Reply(text="A cat."))
    answer = await _ask(page, "what is this?")
    await expect(answer).to_have_text("A cat.")
    await expect(page.locator(".msg.user .attachment")).to_have_text("📎 cat.png")
    await expect(page.locator("#files .attachment")).to_have_count(0)
    await page.screenshot(path=tmp_path / "upload.png", full_page=True)
    (message,) = received
    assert isinstance(message, InboundMessage) and message.text == "what is this?"
    (part,) = message.parts
    assert (part.kind, part.name, part.mime) == ("image", "cat.png", "image/png")
    assert await gw.channels["web"].fetch(part, 1_000_000) == picture
    # the media path gave the picture to the model as pixels
    bodies = [json.dumps(request.body) for request in fake_llm.requests]
    assert any('"url": "data:image/' in body for body in bodies)


async def test_an_invited_person_chats_but_cannot_open_the_panel(
    browser: Browser, make_config: Any, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    config = gateway_config(make_config, fake_llm, webui={"guest_chat": True})
    async with Gateway(config) as gw:
        owner = await browser.new_page()
        await _set_up(owner, gw, tmp_path)
        await owner.click("nav >> text=Panel")
        await owner.click(".tabs >> text=Guests")
        await owner.fill("#guest-name", "Eve")
        await owner.click("#new-invite button")
        link = await owner.locator("#invite-link").text_content()
        assert link and "/join?invite=" in link
        await owner.screenshot(path=tmp_path / "guests.png", full_page=True)

        context = await browser.new_context()  # another person's browser
        guest = await context.new_page()
        dialogs = Dialogs(guest)
        await guest.goto(link)
        await expect(guest.locator("h1")).to_have_text("Hello, Eve")
        await guest.screenshot(path=tmp_path / "join.png", full_page=True)
        await guest.click("#join button")
        await expect(guest.locator("#status")).to_have_text("connected")
        await expect(guest.locator("nav >> text=Panel")).to_have_count(0)
        fake_llm.push(Reply(text="Hello **Eve**."))
        answer = await _ask(guest, "hi, I am Eve")
        await expect(answer.locator("strong")).to_have_text("Eve")
        await guest.screenshot(path=tmp_path / "guest-chat.png", full_page=True)
        response = await guest.goto(base_url(gw) + "/panel")
        assert response is not None and response.status == 403
        await expect(guest.locator("body")).to_contain_text("the control panel is the owner's")
        await owner.reload()
        await expect(owner.locator("#guest-list")).to_contain_text("Eve")
        assert dialogs.seen == []
        await context.close()


async def test_a_passkey_added_after_setup_signs_the_owner_in(
    browser: Browser, gw: Gateway, tmp_path: Path
) -> None:
    # a relying party id must be a host name: browsers refuse an IP address
    base = base_url(gw).replace("127.0.0.1", "localhost")
    context = await browser.new_context()
    page = await context.new_page()
    cdp = await context.new_cdp_session(page)
    added = await add_authenticator(cdp)
    await page.goto(base + "/")
    await page.fill("#code", gw.setup_code or "")
    await page.fill("#password", PASSWORD)
    await page.fill("#confirm", PASSWORD)
    await page.click("#welcome button[type=submit]")
    await page.click("#to-chat")
    await expect(page.locator("#status")).to_have_text("connected")

    await page.goto(base + "/panel/passkeys")
    await page.click("#passkey-add")
    await expect(page.locator("#note")).to_have_text("passkey added")
    await expect(page.locator("#passkey-list")).to_contain_text("never")
    await page.screenshot(path=tmp_path / "passkeys.png", full_page=True)
    stored = await gw.store.read(
        lambda c: c.execute("SELECT credential_id, sign_count FROM web_passkeys").fetchall()
    )
    on_device = await cdp.send(
        "WebAuthn.getCredentials", {"authenticatorId": added["authenticatorId"]}
    )
    assert len(stored) == 1 and len(on_device["credentials"]) == 1
    assert on_device["credentials"][0]["isResidentCredential"]

    await page.click("#logout")
    await expect(page).to_have_url(base + "/login")
    await page.screenshot(path=tmp_path / "login-passkey.png", full_page=True)
    await page.click("#passkey-signin")
    await expect(page.locator("#status")).to_have_text("connected")  # the chat, signed in
    assert page.url == base + "/"
    used = await gw.store.read(
        lambda c: c.execute("SELECT last_used FROM web_passkeys").fetchone()[0]
    )
    assert used is not None

    # a passkey of another authenticator (not registered here) is refused
    await page.click("#logout")
    await cdp.send(
        "WebAuthn.removeVirtualAuthenticator", {"authenticatorId": added["authenticatorId"]}
    )
    other = await add_authenticator(cdp)
    await cdp.send(
        "WebAuthn.addCredential",
        {
            "authenticatorId": other["authenticatorId"],
            "credential": {
                "credentialId": "c3RyYW5nZXI=",
                "isResidentCredential": True,
                "rpId": "localhost",
                "privateKey": _p256_key(),
                "userHandle": "ZGVjYXBvZC1vd25lcg==",
                "signCount": 0,
            },
        },
    )
    await page.click("#passkey-signin")
    await expect(page.locator("#passkey-error")).to_contain_text("not accepted")
    await expect(page).to_have_url(base + "/login")
    await context.close()


def _p256_key() -> str:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return base64.b64encode(der).decode()


async def test_a_message_too_big_for_the_socket_is_kept_and_the_chat_goes_on(
    browser: Browser, gw: Gateway, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    """A paste larger than a socket frame may be: sent, the server would close the socket,
    and the page would send it again at every reconnect, so nothing after it got through."""
    page = await browser.new_page()
    await _set_up(page, gw, tmp_path)
    pasted = "a line of a very long log\n" * 12_000  # some 300 KB
    # pasted, as a person would: typing it key by key takes the test driver minutes
    await page.eval_on_selector("#input", "(input, text) => { input.value = text; }", pasted)
    await page.press("#input", "Enter")
    await expect(page.locator("#status")).to_contain_text("too long", timeout=10_000)
    assert await page.input_value("#input") == pasted, "what was typed is kept"
    await expect(page.locator(".msg.user")).to_have_count(0)
    fake_llm.push(Reply(text="Short and sweet."))
    answer = await _ask(page, "a short one then")
    await expect(answer).to_have_text("Short and sweet.")
