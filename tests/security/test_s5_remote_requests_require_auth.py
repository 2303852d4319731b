"""S5: the loopback-bound gateway trusts no request for being "local" unless it really is."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from bot.gateway import Gateway
from bot.providers.testing import ScriptedProvider

CASES: dict[str, dict[str, Any]] = {
    "a_no_headers": {},
    "b_x_forwarded_for": {"headers": {"X-Forwarded-For": "203.0.113.9"}},
    "c_forwarded": {"headers": {"Forwarded": "for=203.0.113.9;proto=https"}},
    "d_foreign_host": {"headers": {"Host": "bot.example.com"}},
    "e_lookalike_host": {"headers": {"Host": "127.evil.com"}},
    "f_ws_foreign_origin": {
        "headers": {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Origin": "https://evil.example",
        }
    },
    "g_token_in_query": {"params": {"token": "whatever"}},
}


@pytest.fixture
async def gateway(make_config: Any) -> Any:
    config = make_config(http={"enabled": True, "port": 0})
    async with Gateway(config, provider=ScriptedProvider([])) as gw:
        yield gw


async def _get(url: str, case: dict[str, Any], extra: dict[str, str] | None = None) -> int:
    headers = {**case.get("headers", {}), **(extra or {})}
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers=headers, params=case.get("params")) as resp,
    ):
        return resp.status


async def _setup(base: str, code: str, case: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            base + "/setup",
            params=case.get("params"),
            headers={**case.get("headers", {}), "X-Setup-Code": code},
        ) as resp,
    ):
        body = await resp.json() if resp.status == 200 else {}
        return resp.status, body


async def test_before_setup_only_a_plain_local_request_reaches_setup(gateway: Any) -> None:
    base = f"http://127.0.0.1:{gateway.http.port}"
    for name, case in CASES.items():
        if name == "a_no_headers":
            continue
        status, _ = await _setup(base, gateway.setup_code, case)
        assert status in (401, 403), name
        assert await _get(base + "/metrics", case) in (401, 403), name
    status, body = await _setup(base, gateway.setup_code, CASES["a_no_headers"])
    assert status == 200 and len(body["token"]) >= 40


async def test_after_setup_everything_needs_the_header_token(gateway: Any) -> None:
    base = f"http://127.0.0.1:{gateway.http.port}"
    _, body = await _setup(base, gateway.setup_code, {})
    token = body["token"]
    for name, case in CASES.items():
        for path in ("/metrics", "/admin/status"):
            assert await _get(base + path, case) in (401, 403), (name, path)
    # a client-claimed scope is ignored; a token in the query string is never accepted
    assert await _get(base + "/admin/status", {}, {"X-Decapod-Scope": "admin"}) == 401
    assert await _get(base + "/admin/status", {"params": {"access_token": token}}) == 401
    auth = {"Authorization": f"Bearer {token}"}
    assert await _get(base + "/metrics", {}, auth) == 200
    assert await _get(base + "/admin/status", {}, auth) == 200
    assert await _get(base + "/metrics", {}, {"Authorization": "Bearer wrong"}) == 401
    # /health is public but shows no details without the token
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/health") as resp:
            assert await resp.json() == {"status": "ok"}
        async with http.get(base + "/health", headers=auth) as resp:
            assert "channels" in await resp.json()
