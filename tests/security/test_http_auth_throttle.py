"""Admin token guessing is throttled per address wherever a token is presented; requests that
present none (the public /health summary) are not."""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.gateway import Gateway
from bot.providers.testing import ScriptedProvider


async def _get(url: str, token: str | None = None) -> tuple[int, str | None]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        return resp.status, resp.headers.get("Retry-After")


async def test_admin_guesses_are_throttled_on_every_path(make_config: Any) -> None:
    config = make_config(http={"enabled": True, "port": 0})
    async with Gateway(config, provider=ScriptedProvider([])) as gw:
        base = f"http://127.0.0.1:{gw.http.port}"
        async with (
            aiohttp.ClientSession() as http,
            http.post(base + "/setup", headers={"X-Setup-Code": gw.setup_code}) as resp,
        ):
            token = (await resp.json())["token"]
        # /health answers a wrong token with the summary, but it was a guess all the same
        for i in range(3):
            assert (await _get(base + "/health", f"guess{i}"))[0] == 200
        for i in range(2):
            assert (await _get(base + "/admin/status", f"guess{i}"))[0] == 401
        status, retry_after = await _get(base + "/metrics", token)
        assert status == 429 and retry_after is not None and int(retry_after) > 0
        assert (await _get(base + "/health", token))[0] == 429
        assert (await _get(base + "/health"))[0] == 200, "the summary needs no credential"
