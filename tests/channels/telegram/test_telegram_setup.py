"""Config keys, `decapod doctor` for Telegram, and starting up: a rejected token stops the
start with a clear error; an unreachable Telegram does not, and the channel connects later."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from bot.config import parse_config
from bot.errors import ChannelError, ConfigError
from channels.telegram import create
from channels.telegram_doctor import doctor
from channels.telegram_polling import sleep_unless
from tests.channels.telegram.conftest import TOKEN_ENV, RecordingSink, channel_table, until
from tests.fakes.telegram import FakeTelegram


def test_config_keys_and_their_errors(fake: FakeTelegram, home: Any) -> None:
    def channel(**table: Any) -> Any:
        return parse_config({"channels": {"tg": {"type": "telegram", **table}}}, home)

    default = channel().channels["tg"]
    assert (default.mode, default.stream, default.max_download_mb) == ("polling", True, 20.0)
    assert default.api_base_url == "https://api.telegram.org/bot"
    hook = channel(mode="webhook", webhook_url="https://bot.example.com/hooks/tg?x=1")
    assert hook.channels["tg"].route_path == "/hooks/tg"
    with pytest.raises(ConfigError, match=r"channels\.tg.*webhook_url"):
        channel(mode="webhook")
    with pytest.raises(ConfigError, match="https"):
        channel(mode="webhook", webhook_url="http://bot.example.com/tg")
    with pytest.raises(ConfigError, match=r"channels\.tg\.poll_timout_s: unknown key"):
        channel(poll_timout_s=10)
    with pytest.raises(ConfigError, match=r"channels\.tg\.mode"):
        channel(mode="carrier-pigeon")


def test_create_reads_secrets_only_from_the_environment(
    make_config: Callable[..., Any], fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV)
    config = make_config(channels={"tg": channel_table(fake)})
    with pytest.raises(ConfigError, match=rf"channels\.tg\.token_env: .*{TOKEN_ENV}"):
        create("tg", config.channels["tg"], config)
    monkeypatch.setenv(TOKEN_ENV, "1:x")
    monkeypatch.setenv("DECAPOD_TEST_HOOK", "has spaces!")
    config = make_config(
        channels={
            "tg": channel_table(
                fake,
                mode="webhook",
                webhook_url="https://h.example/tg",
                webhook_secret_env="DECAPOD_TEST_HOOK",
            )
        }
    )
    with pytest.raises(ConfigError, match=r"channels\.tg\.mode: .*\[http\] enabled"):
        create("tg", config.channels["tg"], config)
    config = config.model_copy(update={"http": config.http.model_copy(update={"enabled": True})})
    with pytest.raises(ConfigError, match=r"webhook_secret_env.*A-Z"):
        create("tg", config.channels["tg"], config)


async def test_doctor_checks_the_token_with_get_me(
    make_config: Callable[..., Any], fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(channels={"tg": channel_table(fake)})
    assert await doctor("tg", config.channels["tg"]) == [
        ("channel tg", True, "telegram bot @decapod_test_bot")
    ]
    hook = make_config(
        channels={"tg": channel_table(fake, mode="webhook", webhook_url="https://h.example/tg")}
    )
    (_, (what, ok, detail)) = await doctor("tg", hook.channels["tg"])
    assert what == "channel tg webhook" and ok and "set at start" in detail
    monkeypatch.setenv(TOKEN_ENV, "7000000001:AArevokedRevokedRevokedRevokedRevoked")
    ((_, ok, detail),) = await doctor("tg", config.channels["tg"])
    assert not ok and "rejected the token" in detail and TOKEN_ENV in detail
    monkeypatch.delenv(TOKEN_ENV)
    ((_, ok, detail),) = await doctor("tg", config.channels["tg"])
    assert not ok and "BotFather" in detail


async def test_a_rejected_token_fails_the_start_loudly(
    make_config: Callable[..., Any], fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "7000000001:AArevokedRevokedRevokedRevokedRevoked")
    config = make_config(channels={"tg": channel_table(fake)})
    channel = create("tg", config.channels["tg"], config)
    with pytest.raises(ChannelError, match=f"rejected the bot token in {TOKEN_ENV}"):
        await channel.start(RecordingSink())


async def test_the_command_menu_and_the_webhook_reset_go_to_telegram_at_once(
    make_config: Callable[..., Any], fake: FakeTelegram
) -> None:
    # neither depends on the other: the start waits for one round trip, not two
    fake.held["setMyCommands"] = asyncio.Event()
    config = make_config(channels={"tg": channel_table(fake)})
    channel = create("tg", config.channels["tg"], config)
    starting = asyncio.create_task(channel.start(RecordingSink()))
    try:
        assert await fake.wait_for("deleteWebhook", timeout=10) is not None
        assert not starting.done()  # the start still waits for the command menu
        fake.held["setMyCommands"].set()
        await starting
        assert channel.health()["connected"] and fake.calls_of("setMyCommands")
    finally:
        fake.held["setMyCommands"].set()
        await starting
        await channel.stop()


async def test_telegram_down_at_start_connects_in_the_background(
    make_config: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    fake = await FakeTelegram().start()
    await fake.stop()  # the port is known, nothing listens on it yet
    config = make_config(channels={"tg": channel_table(fake)})
    channel = create("tg", config.channels["tg"], config)
    sink = RecordingSink()
    await channel.start(sink)
    try:
        assert not channel.health()["connected"]
        await fake.start()
        fake.push_private("are you there?")
        await until(lambda: [m.text for m in sink.messages] == ["are you there?"], 10)
        assert channel.health()["connected"] and channel.health()["username"]
    finally:
        await channel.stop()
        await fake.stop()
    assert any("connecting in the background" in r.getMessage() for r in caplog.records)


async def test_a_failing_store_leaves_the_update_with_telegram(
    fake: FakeTelegram, start_channel: Callable[..., Any]
) -> None:
    sink = RecordingSink()
    sink.fail = True
    update = fake.push_private("keep me")
    await start_channel(sink)
    await until(lambda: len(fake.offsets) >= 2)
    assert fake.pending == [update] and fake.confirmed_below() <= update["update_id"]
    sink.fail = False
    await until(lambda: [m.text for m in sink.messages] == ["keep me"], 10)
    await until(lambda: fake.confirmed_below() > update["update_id"])


async def test_a_pause_cancelled_as_its_event_is_set_stays_cancelled() -> None:
    """The polling loops sleep until a stop; a cancellation that lands in the same turn as
    the stop must not be swallowed (asyncio.wait_for on Python 3.11 returns normally then)."""
    stopping = asyncio.Event()
    pause = asyncio.create_task(sleep_unless(stopping, 30.0))
    await asyncio.sleep(0)  # the pause is waiting now
    stopping.set()
    pause.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pause
