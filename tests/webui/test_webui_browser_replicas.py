"""Passkeys behind a balancer, in a real headless Chromium with a CDP virtual authenticator:
the challenge is issued by one replica and the authenticator's answer reaches the other, for
adding a passkey and for signing in with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, expect

from tests.fakes.llm import FakeLLM
from tests.webui.balancer import balancer
from tests.webui.conftest import CHROMIUM, PASSWORD, add_authenticator, client, set_up
from tests.webui.test_webui_replicas import replicas

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="the browser tests need Chromium: apt-get install chromium"
    ),
    pytest.mark.slow,
    pytest.mark.replicas,
]

#: the steps sent to replica b; everything else goes to replica a
TO_B = {"/passkey/register", "/passkey/login/options"}


def _pick(request: web.Request) -> int:
    return 1 if request.path in TO_B else 0


async def test_a_passkey_challenge_from_one_replica_is_answered_to_the_other(
    browser: Browser, tmp_path: Path, pg_url: str, fake_llm: FakeLLM
) -> None:
    async with replicas(tmp_path, pg_url, fake_llm) as (a, b):
        async with client() as http:
            await set_up(http, a)
        async with balancer([a, b], _pick) as (port, seen):
            base = f"http://localhost:{port}"  # a host name: browsers refuse an IP there
            context = await browser.new_context()
            page = await context.new_page()
            cdp = await context.new_cdp_session(page)
            await add_authenticator(cdp)

            await page.goto(base + "/login")
            await page.fill("#password", PASSWORD)
            await page.click("#login button[type=submit]")
            await expect(page).to_have_url(base + "/")

            await page.goto(base + "/panel/passkeys")
            await page.click("#passkey-add")
            await expect(page).to_have_url(base + "/panel/passkeys?note=passkey+added")
            known = await a.store.read(
                lambda c: c.execute("SELECT COUNT(*) FROM web_passkeys").fetchone()[0]
            )
            assert known == 1

            await page.click("#logout")
            await expect(page).to_have_url(base + "/login")
            await page.click("#passkey-signin")
            await expect(page).to_have_url(base + "/")
            used = await a.store.read(
                lambda c: c.execute("SELECT last_used FROM web_passkeys").fetchone()[0]
            )
            assert used is not None
            await context.close()
        steps = [s for s in seen if "/passkey/" in s and s.split()[1] == "POST"]
        assert steps == [
            "0 POST /passkey/register/options",
            "1 POST /passkey/register",
            "1 POST /passkey/login/options",
            "0 POST /passkey/login",
        ]
