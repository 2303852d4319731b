"""Roles and the replica registry: SQLite keeps one "single" process that receives as before;
on PostgreSQL replicas heartbeat into `replicas` and age out; a Telegram channel told to wait
connects for sending only and polls just between `start_receiving` and `stop_receiving`;
`decapod status` names the role and the live replicas."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot.cli_status import render_status
from bot.cluster.registry import LIVE_BEATS, ReplicaId, ReplicaRegistry, new_replica_id
from bot.gateway import Gateway
from bot.messages import Conversation, ConversationKind, OutboundMessage
from bot.providers.testing import ScriptedProvider
from bot.store.config import StoreConfig, open_store
from channels.telegram import TelegramChannel
from tests.channels.telegram.conftest import (  # noqa: F401 (fixtures)
    ALICE,
    RecordingSink,
    _token,
    channel_table,
    fake,
    start_channel,
    until,
)
from tests.fakes.telegram import FakeTelegram


async def test_on_sqlite_the_one_process_is_single_and_polls_as_before(
    fake: FakeTelegram,  # noqa: F811
    make_config: Callable[..., Any],
) -> None:
    config = make_config(
        channels={"tg": channel_table(fake, access={"dm_policy": "open"})},
        sandbox={"backend": "none"},
        memory={"enabled": False},
    )
    async with Gateway(config, provider=ScriptedProvider(["hello back"])) as gw:
        fake.push_private("hello", user_id=ALICE)
        await until(lambda: fake.texts(ALICE) == ["hello back"], 10)
        health = await gw.health()
        assert health["cluster"] == {
            "replica": str(gw.cluster.replica),
            "role": "single",
            "replicas": [{"id": str(gw.cluster.replica), "role": "single"}],
        }
        assert health["channels"]["tg"]["receiving"] is True
        assert gw.cluster.election is None and gw.cluster.receivers == []
        rows = await gw.store.read(lambda c: c.execute("SELECT * FROM replicas").fetchall())
        assert rows == []  # nothing written: no heartbeats on one process


def test_a_replica_id_names_host_pid_and_start() -> None:
    replica, again = new_replica_id(), new_replica_id()
    assert replica != again  # a gateway started again is another replica
    assert ReplicaId.parse(str(replica)) == replica
    assert str(ReplicaId("box-1", 42, 1700000000.5)) == "box-1/42/1700000000.500"
    assert ReplicaId.parse("a/b/c/7/1.25") == ReplicaId("a/b/c", 7, 1.25)


async def test_heartbeats_show_live_replicas_and_the_dead_age_out(pg_url: str, home: Any) -> None:
    store = open_store(StoreConfig(url=pg_url), home)
    await store.start()
    try:
        every = 0.2
        one = ReplicaRegistry(store, ReplicaId("a", 1, 1.0), lambda: "leader", every_s=every)
        two = ReplicaRegistry(store, ReplicaId("b", 2, 2.0), lambda: "follower", every_s=every)
        dead = ReplicaRegistry(store, ReplicaId("c", 3, 3.0), lambda: "follower", every_s=every)
        await dead.beat()  # beats once, then its process is gone
        await one.start()
        await two.start()
        live = await one.live()
        assert [(r.id, r.role) for r in live] == [
            ("a/1/1.000", "leader"),
            ("b/2/2.000", "follower"),
            ("c/3/3.000", "follower"),
        ]
        deadline = time.monotonic() + 30
        while len(await one.live()) == 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(every)
        assert [r.id for r in await two.live()] == ["a/1/1.000", "b/2/2.000"]
        await asyncio.sleep(LIVE_BEATS * every)  # the live ones keep beating
        assert len(await one.live()) == 2
        await two.stop()  # a clean stop takes its row away at once
        assert [r.id for r in await one.live()] == ["a/1/1.000"]
        await one.stop()
    finally:
        await store.stop()


async def test_a_waiting_telegram_channel_sends_and_polls_only_while_told(
    fake: FakeTelegram,  # noqa: F811
    make_config: Callable[..., Any],
) -> None:
    config = make_config(channels={"tg": channel_table(fake, poll_timeout_s=2)})
    from channels.telegram import create

    channel = create("tg", config.channels["tg"], config)
    assert isinstance(channel, TelegramChannel) and channel.receives_exclusively()
    channel.receive_on_start = False
    sink = RecordingSink()
    await channel.start(sink)
    try:
        fake.push_private("held", user_id=ALICE)
        await asyncio.sleep(1.0)
        assert fake.offsets == [] and sink.messages == []  # connected, not polling
        conversation = Conversation("tg", str(ALICE), ConversationKind.DM)
        await channel.send(OutboundMessage(conversation, "sent by a follower"))
        assert fake.texts(ALICE) == ["sent by a follower"]
        assert channel.health()["receiving"] is False

        await channel.start_receiving()
        await until(lambda: [m.text for m in sink.messages] == ["held"], 10)
        assert channel.health()["receiving"] is True

        await channel.stop_receiving()
        assert channel.health()["receiving"] is False
        assert not fake.pending  # "held" was confirmed when it stopped
        await until(lambda: fake.polling == 0, 5)  # the fake sees the poll's client leave
        polls = len(fake.offsets)
        fake.push_private("not now", user_id=ALICE)
        await asyncio.sleep(1.0)
        assert len(fake.offsets) == polls and len(sink.messages) == 1

        await channel.start_receiving()  # leads again
        await until(lambda: [m.text for m in sink.messages] == ["held", "not now"], 10)
    finally:
        await channel.stop()
    assert fake.max_polling == 1


def test_status_names_the_role_and_the_live_replicas() -> None:
    report: dict[str, Any] = {
        "status": "ok",
        "version": "decapod 1",
        "uptime_s": 5,
        "channels": {},
        "cluster": {
            "replica": "b/2/2.000",
            "role": "follower",
            "replicas": [
                {"id": "a/1/1.000", "role": "leader", "seen_s": 0.4},
                {"id": "b/2/2.000", "role": "follower", "seen_s": 1.0},
            ],
        },
    }
    text = render_status("http://127.0.0.1:8080", report)
    assert "replica    b/2/2.000 (follower)" in text
    assert "cluster    2 live replica(s)" in text
    assert "a/1/1.000: leader, seen 0.4s ago" in text
    single = {**report, "cluster": {"replica": "x/1/1.000", "role": "single", "replicas": []}}
    lines = render_status("http://127.0.0.1:8080", single).splitlines()
    assert "replica    x/1/1.000 (single)" in lines
    assert not any(line.startswith("cluster") for line in lines)


def test_replicas_refuse_a_telegram_webhook_without_a_shared_secret(
    make_config: Callable[..., Any],
) -> None:
    from bot.cluster.node import check_shared_secrets
    from bot.errors import ConfigError

    webhook = {
        "type": "telegram",
        "mode": "webhook",
        "webhook_url": "https://bot.example.org/telegram",
    }
    config = make_config(
        channels={"tg": webhook}, store={"url": "postgresql://decapod@db.example.org/decapod"}
    )
    with pytest.raises(ConfigError, match=r"channels\.tg\.webhook_secret_env: .* every replica"):
        check_shared_secrets(config)
    shared = make_config(
        channels={"tg": {**webhook, "webhook_secret_env": "TG_WEBHOOK_SECRET"}},
        store={"url": "postgresql://decapod@db.example.org/decapod"},
    )
    check_shared_secrets(shared)  # no error
    make_config(channels={"tg": webhook})  # one process on SQLite: its own secret is fine


async def test_a_gateway_on_postgresql_refuses_it_at_start(
    make_config: Callable[..., Any],
) -> None:
    from bot.errors import ConfigError

    config = make_config(
        channels={
            "tg": {
                "type": "telegram",
                "mode": "webhook",
                "webhook_url": "https://bot.example.org/telegram",
            }
        },
        store={"url": "postgresql://decapod@db.example.org/decapod"},
    )
    with pytest.raises(ConfigError, match="webhook_secret_env"):
        Gateway(config, provider=ScriptedProvider([]))
