"""The pieces on their own: text conversion, normalization, subcommands, the dedupe and
thread memory, the config model, and `decapod doctor`'s checks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bot.channel_configs.slack import SlackChannelConfig
from bot.commands import CommandSpec
from bot.config import parse_config
from bot.errors import ChannelError, ConfigError
from channels.slack import SlackChannel, create, doctor
from channels.slack_inbound import (
    Normalizer,
    RecentDeliveries,
    ThreadMemory,
    help_text,
    split_subcommand,
)
from channels.slack_mrkdwn import from_slack, to_mrkdwn
from tests.channels.slack.conftest import slack_settings
from tests.fakes.slack import FakeSlack, payload

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __also__", "*bold* and *also*"),
        ("*italic* and _too_ and ***both***", "_italic_ and _too_ and *_both_*"),
        ("~~gone~~", "~gone~"),
        ("[the docs](https://x.example/a?b=1&c=2)", "<https://x.example/a?b=1&amp;c=2|the docs>"),
        ("see <https://x.example>", "see <https://x.example>"),
        ("## A **heading**", "*A heading*"),
        ("- one\n  * two", "• one\n  • two"),
        ("> quoted **text**", "> quoted *text*"),
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("<!channel> <@U123>", "&lt;!channel&gt; &lt;@U123&gt;"),
        ("`x **not bold** <y>`", "`x **not bold** &lt;y&gt;`"),
        ("```python\nif a < b: print('**x**')\n```", "```\nif a &lt; b: print('**x**')\n```"),
        ("2 * 3 * 4 and snake_case_name", "2 * 3 * 4 and snake_case_name"),
    ],
)
def test_markdown_becomes_mrkdwn(markdown: str, mrkdwn: str) -> None:
    assert to_mrkdwn(markdown) == mrkdwn


def test_slack_markup_becomes_plain_text() -> None:
    text = (
        "<@UBOT> ask <@U1|bob> in <#C1|general> about <https://x.example|the site>, "
        "<https://y.example>, <mailto:a@b.example|a@b.example> <!here> &lt;b&gt; &amp;"
    )
    assert from_slack(text, "UBOT") == (
        "ask @bob in #general about the site (https://x.example), https://y.example, "
        "a@b.example @here <b> &"
    )


def _normalizer(tmp_path: Path) -> Normalizer:
    return Normalizer("slack", "UBOT", ThreadMemory(tmp_path / "threads.json"))


async def test_normalizing_places_each_message_in_its_session(tmp_path: Path) -> None:
    normalizer = _normalizer(tmp_path)
    dm = normalizer.event(payload("dm_message"))
    mention = normalizer.event(payload("app_mention"))
    reply = normalizer.event(payload("thread_reply"))
    assert dm is not None and mention is not None and reply is not None
    assert dm[0].session_key == "slack:dm:D0001" and not dm[0].mentioned
    assert mention[0].session_key == "slack:channel:C0001:thread:1718000100.000200"
    assert mention[0].mentioned and mention[0].text == "what is the capital of France?"
    # a reply in a thread the bot is not in is not addressed to it...
    assert reply[0].session_key == mention[0].session_key and not reply[0].mentioned
    await normalizer.threads.add("C0001", "1718000100.000200")
    # ...until the bot has posted there
    again = normalizer.event(payload("thread_reply"))
    assert again is not None and again[0].mentioned and again[0].reply_to == "1718000100.000200"
    # the same message as `message` and as `app_mention`: different events, the same keys
    as_message = normalizer.event(payload("channel_message"))
    assert as_message is not None and as_message[0].mentioned
    assert mention[1][0] != as_message[1][0] and mention[1][1:] == as_message[1][1:]


def test_dm_threads_and_group_dms_and_bots(tmp_path: Path) -> None:
    normalizer = _normalizer(tmp_path)
    body = payload("dm_message")
    body["event"]["thread_ts"] = "1718000000.000001"
    dm = normalizer.event(body)
    assert dm is not None
    assert dm[0].conversation.thread_id is None and dm[0].meta == {"thread_ts": "1718000000.000001"}
    group = payload("channel_message")
    group["event"].update(channel="G0001", channel_type="mpim")
    grouped = normalizer.event(group)
    # a group DM is placed like a channel: its app_mention events cannot tell them apart
    assert grouped is not None
    assert grouped[0].session_key == f"slack:channel:G0001:thread:{group['event']['ts']}"
    bot = normalizer.event(payload("bot_message"))
    assert bot is not None and bot[0].identity.is_bot and bot[0].identity.user_id == "B0002"
    for skipped in ("message_changed", "message_deleted", "channel_join"):
        assert normalizer.event(payload(skipped)) is None


def test_every_file_is_attached_even_one_too_large_or_without_a_link(tmp_path: Path) -> None:
    """The download refuses what it cannot fetch, so the person hears of each file."""
    body = payload("file_share")
    del body["event"]["files"][0]["url_private_download"], body["event"]["files"][0]["url_private"]
    normalized = _normalizer(tmp_path).event(body)
    assert normalized is not None
    message = normalized[0]
    assert [(p.name, p.ref, p.size) for p in message.parts] == [
        ("notes.txt", "", 13),
        ("holiday.mov", body["event"]["files"][1]["url_private_download"], 734003200),
    ]
    assert message.text == "what does this say?"


def _commands(*names: str) -> list[CommandSpec]:
    async def handler(ctx: Any) -> str:
        return ""

    return [
        CommandSpec(n, f"{n} things", handler, usage="<x>" if n == "ask" else "") for n in names
    ]


def test_subcommands_and_help() -> None:
    names = ["ask", "new", "status", "remind"]
    assert split_subcommand("", names) is None
    assert split_subcommand("help", names) is None
    assert split_subcommand("NEW", names) == ("new", "")
    assert split_subcommand("remind in 10m stretch", names) == ("remind", "in 10m stretch")
    assert split_subcommand("remind\nin 10m\nstretch", names) == ("remind", "in 10m\nstretch")
    assert split_subcommand("/status", names) == ("status", "")
    assert split_subcommand("why is the sky blue?", names) == ("ask", "why is the sky blue?")
    assert split_subcommand("why?", ["new"]) is None
    listing = help_text("/decapod", _commands("ask", "help", "new"))
    assert listing.splitlines() == [
        "`/decapod help` — List these subcommands",
        "`/decapod ask &lt;x&gt;` — ask things",
        "`/decapod new` — new things",
    ]


async def test_a_delivery_being_handed_on_holds_its_duplicates() -> None:
    recent = RecentDeliveries(limit=2)
    assert await recent.claim(["a", "x"])
    waiting = asyncio.create_task(recent.claim(["x"]))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    recent.settle(["a", "x"], handed_on=False)
    assert await waiting  # the first attempt failed: the retry goes ahead
    recent.settle(["x"], handed_on=True)
    assert not await recent.claim(["x"])
    for key in ("b", "c"):
        assert await recent.claim([key])
        recent.settle([key], handed_on=True)
    assert await recent.claim(["x"])  # bounded: the oldest key was forgotten


async def test_thread_memory_in_process_is_bounded() -> None:
    memory = ThreadMemory(None, limit=2)
    for ts in ("1", "2", "3"):
        await memory.add("C1", ts)
    assert ("C1", "1") not in memory and ("C1", "3") in memory and len(memory) == 2


def test_config_keys_are_checked(home: Path) -> None:
    base = {"type": "slack"}
    config = parse_config({"channels": {"s": {**base, "working_signal": ":hourglass:"}}}, home)
    settings = config.channels["s"]
    assert isinstance(settings, SlackChannelConfig)
    assert settings.mode == "socket" and settings.working_signal == "hourglass"
    bad = [
        ({"mode": "webhook"}, r"mode: Input should be 'socket' or 'http'"),
        ({"slash_command": "decapod"}, "slash_command"),
        ({"api_url": "slack.com/api"}, r"expected an http\(s\) URL"),
        ({"bot_token": "xoxb-1"}, "unknown key"),
    ]
    for extra, expected in bad:
        with pytest.raises(ConfigError, match=expected):
            parse_config({"channels": {"s": {**base, **extra}}}, home)


def test_a_missing_token_names_the_key(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLACK_SIGNING_SECRET", raising=False)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-decapod-unit-test")
    config = parse_config({"channels": {"s": {"type": "slack", "mode": "http"}}}, home)
    settings = config.channels["s"]
    assert isinstance(settings, SlackChannelConfig)
    with pytest.raises(ConfigError, match=r"channels\.s\.signing_secret_env"):
        create("s", settings, config)


async def test_doctor_checks_tokens_against_slack(
    fake: FakeSlack, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config({"channels": {"s": slack_settings(fake)}}, home)
    settings = config.channels["s"]
    assert isinstance(settings, SlackChannelConfig)
    good = await doctor("s", settings)
    assert [ok for _, ok, _ in good] == [True, True], good
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-decapod-revoked")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xoxb-in-the-wrong-place")
    bad = await doctor("s", settings)
    assert [ok for _, ok, _ in bad] == [False, False]
    assert "invalid_auth" in bad[0][2] and "xapp-" in bad[1][2]


async def test_health_reports_the_socket(fake: FakeSlack, tmp_path: Path) -> None:
    channel = SlackChannel("s", SlackChannelConfig(type="slack", api_url=fake.api_url), tmp_path)

    async def sink(message: Any) -> None:
        return None

    assert not channel.health()["running"]
    await channel.start(sink)
    try:
        await fake.wait_connected()
        assert channel.health() == {
            "type": "slack",
            "mode": "socket",
            "running": True,
            "bot_user_id": "UBOT",
            "receiving": True,
        }
    finally:
        await channel.stop()
    assert not channel.health()["running"]


async def test_wrong_tokens_stop_the_start_with_the_key_to_fix(
    fake: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def sink(message: Any) -> None:
        return None

    settings = SlackChannelConfig(type="slack", api_url=fake.api_url)
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-decapod-revoked")
    with pytest.raises(ChannelError, match=r"invalid_auth.*SLACK_APP_TOKEN"):
        await SlackChannel("s", settings, tmp_path).start(sink)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-decapod-revoked")
    channel = SlackChannel("s", settings, tmp_path)
    with pytest.raises(ChannelError, match=r"invalid_auth.*SLACK_BOT_TOKEN"):
        await channel.start(sink)
    assert not channel.health()["running"]


def test_the_manifest_matches_what_the_adapter_needs() -> None:
    manifest = json.loads((ROOT / "docs" / "channels" / "slack-manifest.json").read_text())
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == SlackChannelConfig(type="slack").slash_command
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True
    assert settings["interactivity"]["is_enabled"] is True  # buttons (approvals, pickers)
    assert {"app_mention", "message.im", "message.channels"} <= set(
        settings["event_subscriptions"]["bot_events"]
    )
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    needed = {"chat:write", "commands", "files:read", "reactions:write", "app_mentions:read"}
    assert needed <= scopes
    assert {"im:history", "channels:history"} <= scopes  # what the message.* events need
