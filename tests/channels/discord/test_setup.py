"""Setup: the config keys, `decapod discord invite-url`, the doctor's token check, and a
rejected token at start."""

from __future__ import annotations

import argparse
import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import discord
import pytest

from bot.errors import ConfigError
from bot.gateway import Gateway
from bot.providers.testing import ScriptedProvider
from channels import discord_cli
from channels.discord import doctor
from tests.channels.discord.conftest import TOKEN_ENV
from tests.fakes.discord import BOT_ID, FakeDiscord
from tests.fakes.forward_proxy import environment_proxy


def test_config_defaults_and_validation(make_config: Any) -> None:
    config = make_config(channels={"dc": {"type": "discord", "guilds": [123, "456"]}})
    cfg = config.channels["dc"]
    assert cfg.guilds == ["123", "456"], "ids compare as strings, whichever way they were written"
    assert (cfg.api_base_url, cfg.gateway_url) == (
        "https://discord.com/api/v10",
        "wss://gateway.discord.gg/",
    )
    assert cfg.allowed_mentions == [] and cfg.stream and cfg.watchdog_s == 30.0
    bad: list[tuple[dict[str, Any], str]] = [
        ({"tokn_env": "X"}, "tokn_env: unknown key"),
        ({"guilds": ["abc"]}, "not a Discord id"),
        ({"gateway_url": "https://example.com"}, "ws(s)://"),
        ({"allowed_mentions": ["here"]}, "allowed_mentions"),
        ({"watchdog_s": 0}, "watchdog_s"),
    ]
    for keys, expected in bad:
        with pytest.raises(ConfigError, match=re.escape(expected)):
            make_config(channels={"dc": {"type": "discord", **keys}})


def _invite(config: Any, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="decapod")
    discord_cli.add_subparsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(["discord", "invite-url", *argv])


def test_invite_url_has_the_scopes_and_the_minimal_permissions(
    make_config: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(TOKEN_ENV, FakeDiscord().token)
    config = make_config(channels={"dc": {"type": "discord", "token_env": TOKEN_ENV}})
    assert discord_cli.run(_invite(config), config) == 0
    url = capsys.readouterr().out.splitlines()[0]
    query = parse_qs(urlparse(url).query)
    assert url.startswith("https://discord.com/oauth2/authorize?")
    assert query["client_id"] == [BOT_ID], "the application id is read from the token"
    assert query["scope"] == ["bot applications.commands"]
    expected = discord.Permissions(
        view_channel=True,
        send_messages=True,
        send_messages_in_threads=True,
        read_message_history=True,
        attach_files=True,
        add_reactions=True,
        use_application_commands=True,
    )
    assert query["permissions"] == [str(expected.value)]


def test_invite_url_without_a_token_needs_the_client_id(
    make_config: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DISCORD_BOT_TOKEN", raising=False)
    config = make_config(channels={"dc": {"type": "discord"}})
    assert discord_cli.run(_invite(config), config) == 2
    assert "DISCORD_BOT_TOKEN is not set" in capsys.readouterr().out
    assert discord_cli.run(_invite(config, "--client-id", "987654321"), config) == 0
    assert "client_id=987654321" in capsys.readouterr().out


async def test_doctor_checks_the_token_and_the_intent(
    fake: FakeDiscord, discord_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = discord_config().channels["discord"]
    checks = await doctor("discord", cfg)
    assert [ok for _, ok, _ in checks] == [True, True]
    assert "logged in as decapod" in checks[0][2]

    fake.application["flags"] = 0  # the Message Content intent is off in the portal
    (_, (what, ok, detail)) = await doctor("discord", cfg)
    assert what == "discord discord intent"
    assert not ok and "Message Content intent" in detail

    monkeypatch.setenv(TOKEN_ENV, "MTIz.bad.token")
    ((_, ok, detail),) = await doctor("discord", cfg)
    assert not ok and "rejected" in detail and "MTIz.bad.token" not in detail

    monkeypatch.delenv(TOKEN_ENV)
    ((_, ok, detail),) = await doctor("discord", cfg)
    assert not ok and f"${TOKEN_ENV} is not set" in detail


async def test_doctor_goes_through_the_proxy_and_follows_no_redirect(
    fake: FakeDiscord, discord_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the adapter's requests: through the environment's proxy, and a redirect is an
    answer, not followed (the proxy found for the first address would be kept for the next)."""
    async with environment_proxy(monkeypatch) as proxy:
        cfg = discord_config().channels["discord"]
        checks = await doctor("discord", cfg)
        assert [ok for _, ok, _ in checks] == [True, True]
        assert proxy.targets == [
            f"{fake.api_base}/users/@me",
            f"{fake.api_base}/oauth2/applications/@me",
        ]
        moved = fake.api_base.replace("/api/", "/moved/api/")
        proxy.targets.clear()
        ((_, ok, detail),) = await doctor("discord", cfg.model_copy(update={"api_base_url": moved}))
    assert (
        not ok and detail == f"GET /users/@me answered 307 (it leads to {fake.api_base}/users/@me)"
    )
    assert proxy.targets == [f"{moved}/users/@me"]


async def test_a_rejected_token_stops_the_start_with_a_config_error(
    fake: FakeDiscord, discord_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "MTIz.wrong.token")
    with pytest.raises(ConfigError, match=f"channels.discord.token_env: .*{TOKEN_ENV}"):
        await Gateway(discord_config(), provider=ScriptedProvider([])).start()
    assert not fake.connected


async def test_two_channels_cannot_point_discord_py_at_different_urls(
    fake: FakeDiscord, make_config: Any
) -> None:
    """discord.py takes one API URL per process: a second channel that wants another one
    is refused at start, and the first keeps working."""
    settings = {"type": "discord", "token_env": TOKEN_ENV, "gateway_url": fake.gateway_url}
    config = make_config(
        channels={
            "dc": {**settings, "api_base_url": fake.api_base},
            "dc2": {**settings, "api_base_url": fake.api_base + "/elsewhere"},
        }
    )
    with pytest.raises(ConfigError, match=r"channels\.dc2\.api_base_url: .*channel dc uses"):
        await Gateway(config, provider=ScriptedProvider([])).start()


async def test_doctor_checks_the_public_key_in_interactions_mode(
    fake: FakeDiscord, discord_config: Any
) -> None:
    cfg = discord_config(mode="interactions", public_key=fake.public_key).channels["discord"]
    fake.application["flags"] = 0  # no gateway in this mode: the intent is not checked
    (_, (what, ok, detail)) = await doctor("discord", cfg)
    assert what == "discord discord public key"
    assert ok and "set the Interactions Endpoint URL" in detail
    other = discord_config(mode="interactions", public_key="ab" * 32).channels["discord"]
    (_, (_, ok, detail)) = await doctor("discord", other)
    assert not ok and fake.public_key in detail
