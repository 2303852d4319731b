"""The connection never goes deaf: RECONNECT/RESUME without duplicate replies, 429s retried
after retry_after, a watchdog for unacknowledged heartbeats, and malformed gateway payloads
skipped while the connection stays up."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.providers.base import ChatRequest
from bot.providers.testing import FunctionProvider
from tests.channels.discord.conftest import channel_of, running, settle
from tests.fakes.discord import ALICE, CHANNEL_ID, FakeDiscord


def echo(request: ChatRequest) -> str:
    return f"re: {request.messages[-1].content}"


async def test_resume_replays_missed_events_without_duplicate_replies(
    fake: FakeDiscord, discord_config: Any
) -> None:
    provider = FunctionProvider(echo)
    dm = f"/channels/{fake.dm_channel_id(ALICE)}/messages"
    async with running(discord_config(), provider) as gateway:
        first = await fake.send_message("first", dm=True)
        command = await fake.send_slash_command("ask", {"question": "a command"})
        await fake.wait_for("POST", dm)
        await fake.until(lambda: fake.interaction_texts(command["token"]) == ["re: a command"])
        await settle(gateway)
        # Discord replays what it thinks we missed, including events we had handled
        fake.resume_duplicates = [("MESSAGE_CREATE", first), ("INTERACTION_CREATE", command)]
        await fake.force_reconnect()
        await fake.send_message("sent while away", dm=True)  # missed: replayed on RESUME
        await fake.wait_for("POST", dm, count=2)
        await fake.send_message("after", dm=True)
        await fake.wait_for("POST", dm, count=3)
        await settle(gateway)
        health = channel_of(gateway).health()
    assert (fake.identifies, fake.resumes) == (1, 1), "the session was resumed, not replaced"
    assert fake.texts_in(fake.dm_channel_id(ALICE)) == [
        "re: first",
        "re: sent while away",
        "re: after",
    ]
    assert fake.interaction_texts(command["token"]) == ["re: a command"]
    assert len(provider.requests) == 4, "each delivery ran once"
    assert health["running"] and health["reconnects"] == 1


@pytest.mark.parametrize("via", [True, False], ids=["discord_429", "edge_429"])
async def test_429_is_retried_after_retry_after(
    fake: FakeDiscord, discord_config: Any, via: bool
) -> None:
    """discord.py retries a 429 from Discord itself; one without the Via header it raises,
    and the channel's send path waits and retries (bot.errors.RateLimited)."""
    dm = f"/channels/{fake.dm_channel_id(ALICE)}/messages"
    fake.rate_limit("POST", dm, retry_after=0.6, via=via)
    async with running(discord_config(), FunctionProvider(echo)) as gateway:
        await fake.send_message("one", dm=True)
        await fake.send_message("two", dm=True)
        await fake.wait_for("POST", dm, count=2)
        await settle(gateway)
    (limited,) = fake.calls_to("POST", dm, status=429)
    delivered = fake.calls_to("POST", dm)
    assert delivered[0].at - limited.at >= 0.55
    assert fake.texts_in(fake.dm_channel_id(ALICE)) == ["re: one", "re: two"], "no loss, in order"


async def test_watchdog_reconnects_when_heartbeats_go_unacknowledged(
    fake: FakeDiscord, discord_config: Any
) -> None:
    fake.heartbeat_interval_s = 0.2
    watchdog_s = 0.5
    async with running(discord_config(watchdog_s=watchdog_s), FunctionProvider(echo)) as gateway:
        await fake.until(lambda: len([f for f in fake.gateway_log if f["op"] == 1]) >= 2)
        fake.stop_acks()  # the socket stays open and quiet: discord.py alone waits 60 s
        deaf_at = time.monotonic()
        await fake.until(lambda: fake.resumes == 1, timeout=5)
        recovered = time.monotonic() - deaf_at
        await fake.send_message("still there?", dm=True)
        await fake.wait_for("POST", f"/channels/{fake.dm_channel_id(ALICE)}/messages")
        await settle(gateway)
        health = channel_of(gateway).health()
    window = fake.heartbeat_interval_s + watchdog_s + watchdog_s / 4
    assert recovered <= window + 0.5, f"reconnected after {recovered:.2f}s"
    assert fake.connections == 2 and fake.identifies == 1
    assert health["watchdog_restarts"] == 1 and health["running"]


async def test_malformed_dispatches_are_logged_and_skipped(
    fake: FakeDiscord, discord_config: Any, caplog: pytest.LogCaptureFixture
) -> None:
    groups = {"*": {"require_mention": False}}
    provider = FunctionProvider(echo)
    async with running(discord_config(access={"groups": groups}), provider) as gateway:
        no_author = fake.message("lost")
        del no_author["author"]
        bad_id = fake.message("also lost")
        bad_id["channel_id"] = "not-a-snowflake"
        broken_interaction = fake.interaction("ask", {"question": "x"})
        del broken_interaction["data"]
        with caplog.at_level(logging.WARNING, logger="decapod.channels.discord"):
            for event, data in [
                ("MESSAGE_CREATE", no_author),
                ("MESSAGE_CREATE", bad_id),
                ("MESSAGE_CREATE", None),
                ("INTERACTION_CREATE", broken_interaction),
                ("THREAD_CREATE", {"id": "1"}),
                ("SOMETHING_NEW", {"x": 1}),
            ]:
                await fake.dispatch(event, data)
            await fake.send_raw({"op": 42, "d": None, "s": None, "t": None})
            await fake.send_message("fine")
            await fake.wait_for("POST", f"/channels/{CHANNEL_ID}/messages")
            await settle(gateway)
        health = channel_of(gateway).health()
    assert [r.messages[-1].content for r in provider.requests] == ["fine"]
    assert fake.connections == 1, "the connection survived"
    assert health["malformed_events"] == 5
    skipped = [m for r in caplog.records if (m := r.getMessage()).startswith("skipped a malformed")]
    assert len(skipped) == 5 and any("MESSAGE_CREATE" in m for m in skipped)
    assert not any("lost" in m for m in skipped), "a person's message is not logged"


async def test_a_frame_that_is_not_json_costs_a_new_connection_not_the_channel(
    fake: FakeDiscord, discord_config: Any
) -> None:
    async with running(discord_config(), FunctionProvider(echo)) as gateway:
        await fake.send_raw("{this is not json")
        await fake.until(lambda: fake.identifies == 2, timeout=5)
        await fake.send_message("hello again", dm=True)
        await fake.wait_for("POST", f"/channels/{fake.dm_channel_id(ALICE)}/messages")
        await settle(gateway)
        assert channel_of(gateway).health()["running"]


async def test_stop_closes_the_connection(fake: FakeDiscord, discord_config: Any) -> None:
    gateway = await Gateway(discord_config(), provider=FunctionProvider(echo)).start()
    channel = channel_of(gateway)
    assert channel.health()["running"] and fake.connected
    await gateway.stop()
    assert not channel.health()["running"]
    await fake.until(lambda: not fake.connected)
