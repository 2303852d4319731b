"""First run with a passkey instead of a password, in a real headless Chromium with a CDP
virtual authenticator: setup code -> passkey -> the chat answers -> log out -> passkey login,
across a gateway restart; a wrong setup code gets no challenge; the passkey-only owner adds a
password on the panel and can then sign in with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from bot.gateway import Gateway
from bot.webui.auth import PASSWORD_KEY
from tests.fakes.llm import FakeLLM, Reply
from tests.webui.conftest import CHROMIUM, PASSWORD, add_authenticator, gateway_config

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="the browser tests need Chromium: apt-get install chromium"
    ),
    pytest.mark.slow,
]


def _base(gw: Gateway) -> str:
    # a relying party id must be a host name: browsers refuse an IP address
    assert gw.http is not None
    return f"http://localhost:{gw.http.port}"


async def _credentials(cdp: Any, authenticator: dict[str, Any]) -> list[Any]:
    found = await cdp.send(
        "WebAuthn.getCredentials", {"authenticatorId": authenticator["authenticatorId"]}
    )
    return list(found["credentials"])


async def _chat_answers(page: Page, fake_llm: FakeLLM, text: str) -> None:
    await expect(page.locator("#status")).to_have_text("connected")
    fake_llm.push(Reply(text=text))
    answers = page.locator(".msg.assistant.done")
    before = await answers.count()
    await page.fill("#input", "hello")
    await page.press("#input", "Enter")
    await expect(answers).to_have_count(before + 1, timeout=30_000)
    await expect(answers.nth(before)).to_have_text(text)


async def test_first_run_with_a_passkey_and_no_password(
    browser: Browser, make_config: Any, fake_llm: FakeLLM, tmp_path: Path
) -> None:
    config = gateway_config(make_config, fake_llm)
    context = await browser.new_context()
    page = await context.new_page()
    cdp = await context.new_cdp_session(page)
    authenticator = await add_authenticator(cdp)
    async with Gateway(config) as gw:
        base = _base(gw)
        await page.goto(base + "/")
        await expect(page.locator("#passkey-setup")).to_be_visible()
        await page.screenshot(path=tmp_path / "welcome-passkey.png", full_page=True)

        # a wrong code: refused before any challenge, so the authenticator is never asked
        await page.fill("#code", "not-the-code")
        await page.click("#passkey-setup")
        await expect(page.locator("#passkey-setup-error")).to_contain_text("not the setup code")
        assert await _credentials(cdp, authenticator) == []

        await page.fill("#code", gw.setup_code or "")
        await page.click("#passkey-setup")
        await expect(page.locator("#done-passkey")).to_be_visible()
        await expect(page.locator("#admin-token")).to_be_visible()
        await page.screenshot(path=tmp_path / "set-up-passkey.png", full_page=True)
        assert len(await _credentials(cdp, authenticator)) == 1
        assert await gw.store.kv.get(PASSWORD_KEY) is None  # no password was set
        await page.click("#to-chat")
        await _chat_answers(page, fake_llm, "Signed in by passkey.")

        await page.click("#logout")
        await expect(page).to_have_url(base + "/login")
        await expect(page.locator("#no-password")).to_be_visible()
        assert await page.locator("#password").count() == 0
        await page.screenshot(path=tmp_path / "login-no-password.png", full_page=True)
        await page.click("#passkey-signin")
        await _chat_answers(page, fake_llm, "Back again.")
        await page.click("#logout")

    async with Gateway(config) as gw:  # a restart: the passkey-only owner is still set up
        assert gw.setup_code is None
        base = _base(gw)
        await page.goto(base + "/")
        await expect(page).to_have_url(base + "/login")
        await page.click("#passkey-signin")
        await _chat_answers(page, fake_llm, "After the restart.")

        # the only way in cannot be removed while there is no password
        await page.goto(base + "/panel/passkeys")
        await expect(page.locator("#password-none")).to_be_visible()
        await page.click("#passkey-list button")
        await expect(page.locator("#note")).to_contain_text("set a password before removing")
        await expect(page.locator("#passkey-list")).not_to_contain_text("No passkey yet")

        await page.fill("#new-password", PASSWORD)
        await page.fill("#new-confirm", PASSWORD)
        await page.click("#password-form button")
        await expect(page.locator("#note")).to_have_text("password saved")
        await expect(page.locator("#password-none")).to_have_count(0)
        await page.screenshot(path=tmp_path / "panel-password.png", full_page=True)

        await page.click("#logout")
        await page.fill("#password", PASSWORD)
        await page.click("#login button[type=submit]")
        await expect(page.locator("#status")).to_have_text("connected")
        assert page.url == base + "/"
    await context.close()


async def test_an_ip_address_page_points_to_a_host_name_for_passkeys(
    browser: Browser, make_config: Any, fake_llm: FakeLLM
) -> None:
    async with Gateway(gateway_config(make_config, fake_llm)) as gw:
        assert gw.http is not None
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{gw.http.port}/")
        await expect(page.locator("#passkey-elsewhere")).to_contain_text(
            f"http://localhost:{gw.http.port}/"
        )
        assert await page.locator("#passkey-setup").count() == 0
        await page.close()
