"""Webhook mode: setWebhook with a secret at start, updates posted to the gateway's own HTTP
server (127.0.0.1), the secret checked, a delivery answered 200 only once it is stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from bot.gateway import Gateway
from bot.providers.testing import ScriptedProvider
from tests.channels.telegram.conftest import ALICE, settled, until
from tests.fakes.telegram import FakeTelegram

HOOK_URL = "https://bot.example.test/telegram/tg"
SECRET = "s3cret_hook-value-1234567890"


@pytest.fixture
def webhook_config(
    tg_config: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Any]:
    monkeypatch.setenv("DECAPOD_TEST_TG_HOOK_SECRET", SECRET)
    return lambda: tg_config(
        mode="webhook",
        webhook_url=HOOK_URL,
        webhook_secret_env="DECAPOD_TEST_TG_HOOK_SECRET",
        http={"enabled": True, "port": 0},
    )


async def test_webhook_delivers_once_and_checks_the_secret(
    fake: FakeTelegram, webhook_config: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    provider = ScriptedProvider(["hello over the webhook"])
    async with Gateway(webhook_config(), provider=provider) as gw:
        assert gw.http.host == "127.0.0.1"
        hook = await fake.wait_for("setWebhook")
        assert hook["url"] == HOOK_URL and hook["secret_token"] == SECRET
        assert hook["allowed_updates"] == ["message", "edited_message", "callback_query"]
        assert hook["max_connections"] == 1 and hook["drop_pending_updates"] is False
        local = f"http://127.0.0.1:{gw.http.port}/telegram/tg"
        message = fake.message(
            "hi via webhook", chat={"id": ALICE, "type": "private"}, user_id=ALICE
        )
        update = {"update_id": 500, "message": message}

        assert await fake.deliver(local, update, secret="wrong") == 401
        assert await fake.deliver(local, update, secret="") == 401
        assert await gw.store.inbound.status("tg", "500") is None

        assert await fake.deliver(local, update) == 200
        assert await gw.store.inbound.status("tg", "500") is not None  # stored before the 200
        await until(lambda: fake.texts(ALICE) == ["hello over the webhook"])
        assert await fake.deliver(local, update) == 200  # Telegram retried: dropped
        await settled(gw)

        async with (
            aiohttp.ClientSession() as http,
            http.post(
                local,
                data=b"{not json",
                headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
            ) as resp,
        ):
            assert resp.status == 200  # a broken body is skipped, not retried forever
        assert await fake.deliver(local, ["not", "an", "update"]) == 200
    assert len(provider.requests) == 1
    assert fake.texts(ALICE) == ["hello over the webhook"]
    assert not fake.offsets, "no getUpdates in webhook mode"
    assert not fake.calls_of("deleteWebhook"), "the webhook stays set across a stop"
    assert any("not JSON" in r.getMessage() for r in caplog.records)
    assert any("malformed" in r.getMessage() for r in caplog.records)


async def test_webhook_without_a_configured_secret_gets_a_random_one(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    config = tg_config(mode="webhook", webhook_url=HOOK_URL, http={"enabled": True, "port": 0})
    async with Gateway(config, provider=ScriptedProvider(["ok"])) as gw:
        hook = await fake.wait_for("setWebhook")
        assert len(hook["secret_token"]) >= 32
        local = f"http://127.0.0.1:{gw.http.port}/telegram/tg"
        assert await fake.deliver(local, {"update_id": 1}, secret="guess") == 401
        assert await fake.deliver(local, {"update_id": 1}) == 200
