"""A real gateway (HTTP on 127.0.0.1, a free port) with the fake LLM behind the openai SDK,
and a signed-in web client."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.gateway import Gateway
from tests.fakes.llm import FakeLLM

PASSWORD = "correct horse battery"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
_FORM_TOKEN = re.compile(r'name="csrf" value="([^"]+)"')
_PAGE_CSRF = re.compile(r'data-csrf="([^"]+)"')


@pytest.fixture(autouse=True)
def _fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as fake:
        yield fake


def gateway_config(make_config: Any, fake: FakeLLM, **extra: Any) -> Any:
    sections: dict[str, Any] = {
        "http": {"port": 0},
        "providers": {"fake": fake.provider(first_token_timeout_s=10)},
        "models": {"chat": ["fake:test-model"]},
        "sandbox": {"backend": "none"},
        "memory": {"enabled": False},
    }
    sections.update(extra)
    return make_config(**sections)


@pytest.fixture
async def gateway(make_config: Any, fake_llm: FakeLLM) -> AsyncIterator[Gateway]:
    async with Gateway(gateway_config(make_config, fake_llm)) as gw:
        yield gw


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[int]:
    """`app` served on 127.0.0.1 at a free port, which it yields."""
    runner = web.AppRunner(app)
    try:  # a failed start (the bind) cleans the runner up too
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def base_url(gw: Gateway) -> str:
    assert gw.http is not None
    return f"http://127.0.0.1:{gw.http.port}"


def client() -> aiohttp.ClientSession:
    # unsafe: the jar keeps cookies of an IP address host (127.0.0.1), as browsers do
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def form_token(html: str) -> str:
    found = _FORM_TOKEN.search(html)
    assert found, html
    return found.group(1)


def page_csrf(html: str) -> str:
    found = _PAGE_CSRF.search(html)
    assert found, html
    return found.group(1)


async def set_up(http: aiohttp.ClientSession, gw: Gateway, password: str = PASSWORD) -> str:
    """Run the first-visit setup; returns the page it leads to."""
    base = base_url(gw)
    async with http.get(base + "/") as resp:
        token = form_token(await resp.text())
    data = {"csrf": token, "code": gw.setup_code, "password": password, "confirm": password}
    async with http.post(base + "/welcome", data=data) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.text()


@dataclass
class SignedIn:
    http: aiohttp.ClientSession
    base: str
    csrf: str

    async def post(self, path: str, **fields: str) -> aiohttp.ClientResponse:
        return await self.http.post(
            self.base + path, data={"csrf": self.csrf, **fields}, allow_redirects=False
        )

    async def get(self, path: str) -> str:
        async with self.http.get(self.base + path, allow_redirects=False) as resp:
            assert resp.status == 200, (path, resp.status)
            return await resp.text()


@pytest.fixture
async def signed_in(gateway: Gateway) -> AsyncIterator[SignedIn]:
    async with client() as http:
        await set_up(http, gateway)
        async with http.get(base_url(gateway) + "/") as resp:
            csrf = page_csrf(await resp.text())
        yield SignedIn(http, base_url(gateway), csrf)


Opener = Callable[..., Awaitable[aiohttp.ClientWebSocketResponse]]


async def until_event(ws: aiohttp.ClientWebSocketResponse, kind: str) -> list[dict[str, Any]]:
    """The chat socket's events up to the first of `kind`, that one included."""
    seen = []
    while True:
        event = await ws.receive_json(timeout=30)
        seen.append(event)
        if event["type"] == kind:
            return seen


def record_inbound(gw: Gateway) -> list[Any]:
    """Every message the web channel hands to the gateway, as the gateway receives it."""
    channel = gw.channels["web"]
    forward = channel.sink
    assert forward is not None
    seen: list[Any] = []

    async def sink(message: Any) -> Any:
        seen.append(message)
        return await forward(message)

    channel.sink = sink
    return seen


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's headless Chromium, driven by Playwright."""
    from playwright.async_api import async_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium refuses root otherwise
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=args)
        yield chromium
        await chromium.close()


async def add_authenticator(cdp: Any) -> dict[str, Any]:
    """A virtual platform authenticator (resident keys, user verified) on the page's CDP
    session; returns {"authenticatorId": ...}."""
    await cdp.send("WebAuthn.enable")
    added: dict[str, Any] = await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )
    return added
