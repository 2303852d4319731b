"""What adapters keep between messages is shared by the replicas: a button press that
reaches another replica than the one that sent the message is answered (Telegram's
callback_query on its webhook, Slack's block_actions on the Events API URL), and a Slack
thread reply that names nobody reaches the bot on a replica that did not take the thread's
mention. Two gateways in one process, each with a home of its own, on one PostgreSQL
database."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config import parse_config
from bot.gateway import Gateway
from bot.providers.testing import ScriptedProvider
from tests.cluster.harness import until
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import TOKEN, FakeTelegram

pytestmark = [pytest.mark.replicas]

OWNER_TG, STRANGER_TG = 42, 77
OWNER_SLACK, STRANGER_DM = "U0001", "D0009"
HOOK_SECRET = "shared-hook-secret-0123456789"


def _config(home: Path, pg_url: str, channel: dict[str, Any], owner: str) -> Any:
    data: dict[str, Any] = {
        "store": {"url": pg_url},
        "http": {"enabled": True, "port": 0},
        "logging": {"file": ""},
        "gateway": {"owners": [owner], "shutdown_grace_s": 0.5, "session_lease_s": 3},
        "sandbox": {"backend": "none"},
        "memory": {"enabled": False},
        "scheduler": {"poll_seconds": 3600},
        "webui": {"enabled": False},
        "channels": {"c": channel},
    }
    return parse_config(data, home)


@contextlib.asynccontextmanager
async def _two_replicas(
    tmp_path: Path,
    pg_url: str,
    channel: dict[str, Any],
    owner: str,
    replies: tuple[str, ...] = ("hello stranger",),
) -> AsyncIterator[tuple[Gateway, Gateway]]:
    homes = [tmp_path / "a", tmp_path / "b"]
    configs = [_config(home, pg_url, channel, owner) for home in homes]
    provider = ScriptedProvider(list(replies))
    async with (
        Gateway(configs[0], provider=provider) as a,
        Gateway(configs[1], provider=provider) as b,
    ):
        yield a, b
    for home in homes:  # nothing of it is kept in a home any more
        assert not list(home.glob("*.json")), list(home.iterdir())


async def test_a_telegram_press_on_the_other_replica_is_answered(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TG_TOKEN", TOKEN)
    monkeypatch.setenv("TG_HOOK_SECRET", HOOK_SECRET)
    async with FakeTelegram() as fake:
        channel = {
            "type": "telegram",
            "token_env": "TG_TOKEN",
            "api_base_url": fake.base_url,
            "file_base_url": fake.file_base_url,
            "chat_interval_s": 0.0,
            "mode": "webhook",
            "webhook_url": "https://bot.example.test/telegram/c",
            "webhook_secret_env": "TG_HOOK_SECRET",
            "access": {"dm_policy": "pairing"},
        }
        async with _two_replicas(tmp_path, pg_url, channel, f"c:{OWNER_TG}") as (a, b):
            hook_a = f"http://127.0.0.1:{a.http.port}/telegram/c"
            hook_b = f"http://127.0.0.1:{b.http.port}/telegram/c"
            hi = fake.push_private("hi", user_id=STRANGER_TG, first_name="Sam")
            assert await fake.deliver(hook_a, hi) == 200
            await until(lambda: fake.buttons(OWNER_TG)[1])
            message_id, keys = fake.buttons(OWNER_TG)
            assert [label for label, _ in keys] == ["Approve", "Deny"]

            press = fake.push_press(OWNER_TG, message_id, keys[0][1], user_id=OWNER_TG)
            assert await fake.deliver(hook_b, press) == 200
            answer = await fake.wait_for(
                "answerCallbackQuery",
                timeout=10,
                callback_query_id=press["callback_query"]["id"],
            )
            assert not answer.get("text"), f"refused: {answer.get('text')}"
            await until(lambda: any(t.startswith("Approved Sam") for t in fake.texts(OWNER_TG)))
            # the same buttons pressed again on the first replica: used up everywhere
            again = fake.push_press(OWNER_TG, message_id, keys[1][1], user_id=OWNER_TG)
            assert await fake.deliver(hook_a, again) == 200
            refused = await fake.wait_for(
                "answerCallbackQuery",
                timeout=10,
                callback_query_id=again["callback_query"]["id"],
            )
            assert refused.get("show_alert") is True
    assert sum(t.startswith("Approved Sam") for t in fake.texts(OWNER_TG)) == 1


async def test_a_slack_press_on_the_other_replica_is_answered(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeSlack() as fake, aiohttp.ClientSession() as http:
        monkeypatch.setenv("SLACK_BOT_TOKEN", fake.bot_token)
        monkeypatch.setenv("SLACK_SIGNING_SECRET", fake.signing_secret)
        channel = {
            "type": "slack",
            "api_url": fake.api_url,
            "mode": "http",
            "access": {"dm_policy": "pairing"},
        }
        async with _two_replicas(tmp_path, pg_url, channel, f"c:{OWNER_SLACK}") as (a, b):
            url_a = f"http://127.0.0.1:{a.http.port}/slack/events"
            url_b = f"http://127.0.0.1:{b.http.port}/slack/events"
            hi = fake.event("dm_message", user="U0009", channel=STRANGER_DM, text="hi")
            assert (await fake.post_signed(http, url_a, hi)).status == 200
            await until(lambda: fake.buttons(OWNER_SLACK)[1])
            ts, keys = fake.buttons(OWNER_SLACK)
            assert [label for label, _ in keys] == ["Approve", "Deny"]

            press = fake.block_actions(OWNER_SLACK, ts, keys[0][1], user=OWNER_SLACK)
            form = {"payload": json.dumps(press)}
            assert (await fake.post_signed(http, url_b, form, form=True)).status == 200
            await until(lambda: any(t.startswith("Approved") for t in fake.texts(OWNER_SLACK)))
            await until(lambda: fake.buttons(OWNER_SLACK) == ("", []))
    assert sum(t.startswith("Approved") for t in fake.texts(OWNER_SLACK)) == 1
    assert fake.messages[(OWNER_SLACK, ts)].endswith("→ Approve (alice)")


async def test_a_slack_thread_reply_on_the_other_replica_reaches_the_bot(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeSlack() as fake, aiohttp.ClientSession() as http:
        monkeypatch.setenv("SLACK_BOT_TOKEN", fake.bot_token)
        monkeypatch.setenv("SLACK_SIGNING_SECRET", fake.signing_secret)
        channel = {
            "type": "slack",
            "api_url": fake.api_url,
            "mode": "http",
            "working_signal": "",
            "access": {"dm_policy": "open", "groups": {"C0001": {"require_mention": True}}},
        }
        owner = f"c:{OWNER_SLACK}"
        replies = ("Paris.", "Rome.")
        async with _two_replicas(tmp_path, pg_url, channel, owner, replies) as (a, b):
            url_a = f"http://127.0.0.1:{a.http.port}/slack/events"
            url_b = f"http://127.0.0.1:{b.http.port}/slack/events"
            mention = fake.event("app_mention")
            root = mention["event"]["ts"]
            assert (await fake.post_signed(http, url_a, mention)).status == 200
            await fake.wait_for("chat.postMessage", timeout=10, thread_ts=root)
            reply = fake.event("thread_reply", thread_ts=root)  # names nobody
            assert (await fake.post_signed(http, url_b, reply)).status == 200
            await until(lambda: fake.texts("C0001") == ["Paris.", "Rome."])
