"""Messages: DMs, guild channels (mention or reply needed), threads as their own sessions,
the guild allowlist, attachments, and no pings in anything the bot sends."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import ChannelError
from bot.messages import Attachment, Conversation, ConversationKind, OutboundMessage
from bot.providers.base import ChatRequest
from bot.providers.testing import FunctionProvider, ScriptedProvider
from channels.discord_inbound import Downloads
from tests.channels.discord.conftest import channel_of, running, settle
from tests.fakes.discord import ALICE, BOB, CHANNEL_ID, FakeDiscord
from tests.fakes.forward_proxy import environment_proxy, thread_hops


def echo(request: ChatRequest) -> str:
    return f"re: {request.messages[-1].content}"


async def test_dm_is_answered_in_the_dm_channel(fake: FakeDiscord, discord_config: Any) -> None:
    provider = FunctionProvider(echo)
    async with running(discord_config(), provider) as gateway:
        await fake.send_message("hello there", dm=True)
        call = await fake.wait_for("POST", f"/channels/{fake.dm_channel_id(ALICE)}/messages")
        await settle(gateway)
        assert gateway.sessions.get(f"discord:dm:{ALICE}").row is not None
    assert call.body["content"] == "re: hello there"
    assert "message_reference" not in call.body, "no reply quotes in a one-to-one chat"
    assert call.body["flags"] == 4, "link previews are off"


async def test_unknown_dm_sender_gets_only_a_pairing_code(
    fake: FakeDiscord, discord_config: Any
) -> None:
    provider = ScriptedProvider([])
    async with running(discord_config(access={"dm_policy": "pairing"}), provider) as gateway:
        await fake.send_message("let me in", dm=True, author=fake.user(BOB, "bob"))
        call = await fake.wait_for("POST", f"/channels/{fake.dm_channel_id(BOB)}/messages")
        await settle(gateway)
        pending = await gateway.store.access.pending()
    assert "code" in call.body["content"]
    assert [(p.channel, p.user_id) for p in pending] == [("discord", BOB)]
    assert provider.requests == [], "an unknown person costs no model call"


async def test_guild_message_is_answered_only_when_the_bot_is_addressed(
    fake: FakeDiscord, discord_config: Any
) -> None:
    provider = FunctionProvider(echo)
    async with running(discord_config(), provider) as gateway:
        await fake.send_message("chatting among ourselves")
        asked = await fake.send_message("what is 2+2?", mention=True)
        first = await fake.wait_for("POST", f"/channels/{CHANNEL_ID}/messages")
        await settle(gateway)
        bot_message = fake.messages[next(iter(fake.messages))]
        await fake.send_message("and 3+3?", reply_to=bot_message)
        second = await fake.wait_for("POST", f"/channels/{CHANNEL_ID}/messages", count=2)
        await settle(gateway)
    # events reach the gateway in order, so the first message was decided before the second
    assert [r.messages[-1].content for r in provider.requests] == ["what is 2+2?", "and 3+3?"]
    assert first.body["content"] == "re: what is 2+2?"
    assert str(first.body["message_reference"]["message_id"]) == asked["id"]
    assert second.body["content"] == "re: and 3+3?"


async def test_channel_setting_can_drop_the_mention_requirement(
    fake: FakeDiscord, discord_config: Any
) -> None:
    groups = {CHANNEL_ID: {"require_mention": False, "allow_users": [ALICE]}}
    provider = FunctionProvider(echo)
    async with running(discord_config(access={"groups": groups}), provider) as gateway:
        await fake.send_message("from someone else", author=fake.user(BOB, "bob"))
        await fake.send_message("no mention needed here")
        await fake.wait_for("POST", f"/channels/{CHANNEL_ID}/messages")
        await settle(gateway)
    assert [r.messages[-1].content for r in provider.requests] == ["no mention needed here"]


@pytest.mark.parametrize("announced", [True, False], ids=["thread_create", "uncached_thread"])
async def test_thread_is_its_own_session(
    fake: FakeDiscord, discord_config: Any, announced: bool
) -> None:
    provider = FunctionProvider(echo)
    # a setting for the parent channel covers its threads
    groups = {CHANNEL_ID: {"require_mention": False}}
    async with running(discord_config(access={"groups": groups}), provider) as gateway:
        thread_id = await fake.create_thread(announce=announced)
        await fake.send_message("remember: apples")
        await fake.wait_for("POST", f"/channels/{CHANNEL_ID}/messages")
        await fake.send_message("what did I say?", channel_id=thread_id)
        reply = await fake.wait_for("POST", f"/channels/{thread_id}/messages")
        await settle(gateway)
        thread_session = gateway.sessions.get(f"discord:channel:{CHANNEL_ID}:thread:{thread_id}")
        assert thread_session.row is not None
    assert reply.body["content"] == "re: what did I say?"
    in_thread = [m.content for m in provider.requests[1].messages]
    assert in_thread == ["what did I say?"], "the thread does not see the channel's history"


async def test_guild_allowlist_ignores_other_servers(
    fake: FakeDiscord, discord_config: Any
) -> None:
    provider = FunctionProvider(echo)
    async with running(discord_config(guilds=["42"]), provider) as gateway:
        await fake.send_message("anyone?", mention=True)
        command = await fake.send_slash_command("ask", {"question": "here?"})
        await fake.send_message("still me", dm=True)
        await fake.wait_for("POST", f"/channels/{fake.dm_channel_id(ALICE)}/messages")
        refusal = await fake.wait_for("POST", f"/{command['token']}/callback")
        await settle(gateway)
    assert [r.messages[-1].content for r in provider.requests] == ["still me"]
    assert refusal.body["type"] == 4 and refusal.body["data"]["flags"] == 64, "ephemeral"


async def test_send_to_a_person_opens_their_dm(fake: FakeDiscord, discord_config: Any) -> None:
    async with running(discord_config(), ScriptedProvider([])) as gateway:
        channel = channel_of(gateway)
        conversation = Conversation("discord", BOB, ConversationKind.DM)
        await channel.send(OutboundMessage(conversation, "a reminder for you"))
        await channel.send(OutboundMessage(conversation, "and another"))
    opened = fake.calls_to("POST", "/users/@me/channels")
    assert len(opened) == 1 and str(opened[0].body["recipient_id"]) == BOB
    assert fake.texts_in(fake.dm_channel_id(BOB)) == ["a reminder for you", "and another"]


async def test_model_output_never_pings(fake: FakeDiscord, discord_config: Any) -> None:
    loud = "@everyone look <@1200000000000000002> <@&1100000000000000002> @here"
    async with running(discord_config(), ScriptedProvider([loud, loud])) as gateway:
        await fake.send_message("shout", mention=True)
        await fake.send_slash_command("ask", {"question": "shout"})
        await fake.until(lambda: fake.texts_in(CHANNEL_ID).count(loud) == 2)
        await settle(gateway)
    # the fake fixture checks allowed_mentions on every message; the content is untouched
    assert fake.texts_in(CHANNEL_ID).count(loud) == 2


async def test_attachment_is_named_for_the_model_and_fetched_on_demand(
    fake: FakeDiscord, discord_config: Any
) -> None:
    provider = FunctionProvider(echo)
    async with running(discord_config(), provider) as gateway:
        sent = await fake.send_message(
            "see file", dm=True, attachments={"notes.txt": b"buy apples\n" * 10}
        )
        await fake.wait_for("POST", f"/channels/{fake.dm_channel_id(ALICE)}/messages")
        await settle(gateway)
        raw = sent["attachments"][0]
        part = Attachment("document", raw["url"], raw["filename"], raw["content_type"], raw["size"])
        channel = channel_of(gateway)
        assert await channel.fetch(part, max_bytes=1000) == b"buy apples\n" * 10
        with pytest.raises(ChannelError):
            await channel.fetch(part, max_bytes=50)
    asked = provider.requests[0].messages[-1].content
    assert "[document notes.txt" in asked and "buy apples" in asked  # read, as text


async def test_attachments_through_the_proxy_take_no_thread_hop_each(
    fake: FakeDiscord, discord_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The downloads' proxy is looked up once for the CDN's address, not in two worker-thread
    round trips for every file (aiohttp's trust_env)."""
    async with (
        environment_proxy(monkeypatch) as proxy,
        running(discord_config(), FunctionProvider(echo)) as gateway,
    ):
        sent = await fake.send_message("see file", dm=True, attachments={"a.txt": b"apples"})
        await fake.wait_for("POST", f"/channels/{fake.dm_channel_id(ALICE)}/messages")
        await settle(gateway)
        raw = sent["attachments"][0]
        part = Attachment("document", raw["url"], raw["filename"], raw["content_type"], raw["size"])
        with thread_hops(monkeypatch) as hops:
            fetched = [await channel_of(gateway).fetch(part, max_bytes=100) for _ in range(3)]
    assert fetched == [b"apples"] * 3
    assert proxy.targets.count(raw["url"]) == 4, "read for the model, then three times here"
    assert hops == [], hops  # looked up once, when the message's file was read for the model


async def test_an_attachment_is_fetched_after_a_stop_and_a_start(
    fake: FakeDiscord, discord_config: Any
) -> None:
    """The channel's downloads outlive a stop: the next start's first fetch opens a session
    of its own, not the closed one (a RuntimeError, not a ChannelError)."""
    async with running(discord_config(), FunctionProvider(echo)) as gateway:
        sent = await fake.send_message("see file", dm=True, attachments={"a.txt": b"apples"})
        await fake.wait_for("POST", f"/channels/{fake.dm_channel_id(ALICE)}/messages")
        await settle(gateway)
        raw = sent["attachments"][0]
        part = Attachment("document", raw["url"], raw["filename"], raw["content_type"], raw["size"])
        channel = channel_of(gateway)
        sink = channel.sink
        assert sink is not None
        await channel.stop()
        await channel.start(sink)
        assert await channel.fetch(part, max_bytes=100) == b"apples"


async def test_own_messages_and_system_messages_are_ignored(
    fake: FakeDiscord, discord_config: Any
) -> None:
    provider = FunctionProvider(echo)
    config = discord_config(access={"groups": {"*": {"require_mention": False}}})
    async with running(config, provider) as gateway:
        await fake.send_message("echo of myself", author=fake.bot_user)
        pin_notice = fake.message("")
        pin_notice["type"] = 6  # "alice pinned a message"
        await fake.dispatch("MESSAGE_CREATE", pin_notice)
        await fake.send_message("a real one")
        await fake.wait_for("POST", f"/channels/{CHANNEL_ID}/messages")
        await settle(gateway)
    assert [r.messages[-1].content for r in provider.requests] == ["a real one"]


async def test_command_in_a_channel_without_access_gets_a_private_note(
    fake: FakeDiscord, discord_config: Any
) -> None:
    provider = ScriptedProvider([])
    async with running(discord_config(access={"groups": {}}), provider) as gateway:
        command = await fake.send_slash_command("ask", {"question": "hello?"})
        note = await fake.wait_for("POST", f"/{command['token']}/callback")
        await settle(gateway)
    assert note.body["type"] == 4 and note.body["data"]["flags"] == 64, "only the asker sees it"
    assert provider.requests == []


async def test_the_gateway_and_the_rest_calls_go_through_the_proxy_from_the_environment(
    fake: FakeDiscord, discord_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """discord.py takes no proxy from the environment; the channel hands it the one the
    environment names for Discord's API, as Telegram's and the models' sessions use."""
    async with (
        environment_proxy(monkeypatch) as proxy,
        running(discord_config(), FunctionProvider(echo)) as gateway,
    ):
        await fake.send_message("hello there", dm=True)
        call = await fake.wait_for("POST", f"/channels/{fake.dm_channel_id(ALICE)}/messages")
        await settle(gateway)
    assert call.body["content"] == "re: hello there"
    assert any(t.startswith(fake.gateway_url.split("?")[0]) for t in proxy.targets), proxy.targets
    assert f"{fake.api_base}/channels/{fake.dm_channel_id(ALICE)}/messages" in proxy.targets


async def test_an_attachment_download_follows_a_few_redirects_each_one_checked(
    fake: FakeDiscord,
) -> None:
    """CDN links can redirect: the download follows up to three hops, each within the
    attachment URL's own origin or to Discord's CDN over https, never to a host the redirect
    picks, nor a loop."""
    fake.attachments["renewed.txt"] = b"buy apples"
    fake.cdn_moves.update(
        {
            "notes.txt": fake.cdn_url("signed.txt"),
            "signed.txt": "/cdn/attachments/renewed.txt",  # relative, as a Location may be
            "loop.txt": fake.cdn_url("loop.txt"),
            "away.txt": f"http://localhost:{fake.port}/cdn/attachments/renewed.txt",
        }
    )
    downloads = Downloads()
    try:
        part = Attachment("document", fake.cdn_url("notes.txt"), "notes.txt", "text/plain", 10)
        assert await downloads.fetch(part, max_bytes=1000) == b"buy apples"
        assert fake.cdn_asked == ["notes.txt", "signed.txt", "renewed.txt"]

        fake.cdn_asked.clear()
        loop = Attachment("document", fake.cdn_url("loop.txt"), "loop.txt", "text/plain", 10)
        with pytest.raises(ChannelError, match="too many times"):
            await downloads.fetch(loop, max_bytes=1000)
        assert fake.cdn_asked == ["loop.txt"] * 4

        fake.cdn_asked.clear()
        away = Attachment("document", fake.cdn_url("away.txt"), "away.txt", "text/plain", 10)
        with pytest.raises(ChannelError, match="away from Discord's CDN"):
            await downloads.fetch(away, max_bytes=1000)
        assert fake.cdn_asked == ["away.txt"], "the plain-http target was never asked"

        # https is not enough: an address of the redirect's choice (here this machine, over
        # https) could be one inside the network, whose answer would reach the model
        for inside in ("127.0.0.1", "localhost", "cdn.discordapp.com.example"):
            fake.cdn_asked.clear()
            fake.cdn_moves["away.txt"] = f"https://{inside}:{fake.port}/cdn/attachments/x.txt"
            with pytest.raises(ChannelError, match="away from Discord's CDN"):
                await downloads.fetch(away, max_bytes=1000)
            assert fake.cdn_asked == ["away.txt"]
    finally:
        await downloads.close()
