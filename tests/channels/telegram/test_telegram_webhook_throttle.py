"""Webhook deliveries are judged by their own secret only: failed admin logins or refused
query-string tokens from the same address (a reverse proxy in front of everything) never
throttle them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from bot.gateway import Gateway
from bot.providers.testing import ScriptedProvider
from tests.channels.telegram.conftest import ALICE, settled, until
from tests.fakes.telegram import FakeTelegram

SECRET = "hook-secret-for-throttle-tests-0123456789"


@pytest.fixture
def webhook_config(
    tg_config: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    monkeypatch.setenv("DECAPOD_TEST_TG_HOOK_SECRET", SECRET)
    return lambda: tg_config(
        mode="webhook",
        webhook_url="https://bot.example.test/telegram/tg",
        webhook_secret_env="DECAPOD_TEST_TG_HOOK_SECRET",
        http={"enabled": True, "port": 0},
    )


async def _status(method: str, url: str, **kwargs: Any) -> int:
    async with aiohttp.ClientSession() as http, http.request(method, url, **kwargs) as resp:
        return resp.status


async def _admin_token(base: str, setup_code: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(base + "/setup", headers={"X-Setup-Code": setup_code}) as resp,
    ):
        token: str = (await resp.json())["token"]
        return token


def _update(fake: FakeTelegram, update_id: int, text: str) -> dict[str, Any]:
    message = fake.message(text, chat={"id": ALICE, "type": "private"}, user_id=ALICE)
    return {"update_id": update_id, "message": message}


async def test_admin_token_failures_do_not_stop_webhook_deliveries(
    fake: FakeTelegram, webhook_config: Callable[..., Any]
) -> None:
    provider = ScriptedProvider(["delivered anyway"])
    async with Gateway(webhook_config(), provider=provider) as gw:
        await fake.wait_for("setWebhook")
        base = f"http://127.0.0.1:{gw.http.port}"
        token = await _admin_token(base, gw.setup_code)
        wrong = [
            await _status("GET", base + "/metrics", headers={"Authorization": f"Bearer guess{i}"})
            for i in range(6)
        ]
        assert wrong == [401] * 5 + [429], "the admin brute force is throttled"

        assert await fake.deliver(base + "/telegram/tg", _update(fake, 700, "hi")) == 200
        await until(lambda: fake.texts(ALICE) == ["delivered anyway"])
        assert (
            await fake.deliver(base + "/telegram/tg", _update(fake, 701, "x"), secret="bad") == 401
        )
        ok = {"Authorization": f"Bearer {token}"}
        assert await _status("GET", base + "/metrics", headers=ok) == 429, "still throttled"
        await settled(gw)
    assert len(provider.requests) == 1


async def test_query_string_tokens_lock_nobody_out(
    fake: FakeTelegram, webhook_config: Callable[..., Any]
) -> None:
    provider = ScriptedProvider(["still here"])
    async with Gateway(webhook_config(), provider=provider) as gw:
        await fake.wait_for("setWebhook")
        base = f"http://127.0.0.1:{gw.http.port}"
        token = await _admin_token(base, gw.setup_code)
        for i in range(10):
            assert await _status("GET", base + "/health", params={"token": f"t{i}"}) == 401
        assert await _status("GET", base + "/health") == 200
        ok = {"Authorization": f"Bearer {token}"}
        assert await _status("GET", base + "/metrics", headers=ok) == 200
        assert await fake.deliver(base + "/telegram/tg", _update(fake, 800, "hi")) == 200
        await until(lambda: fake.texts(ALICE) == ["still here"])
        await settled(gw)
