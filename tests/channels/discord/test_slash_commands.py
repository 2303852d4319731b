"""Slash commands: synced from the shared table, acknowledged at once with a placeholder,
answered through the interaction (streamed edits of the placeholder, followups past 2,000
characters), and in the channel once the interaction's token is too old."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import channels.discord_outbound
from bot.providers.base import ChatEvent, ChatRequest, TextDelta
from bot.providers.testing import FunctionProvider, ScriptedProvider
from channels.discord_outbound import CONTINUED, PLACEHOLDER
from tests.channels.discord.conftest import full, running, settle, slow_pieces
from tests.fakes.discord import ALICE, BOT_ID, CHANNEL_ID, GUILD_ID, FakeDiscord


async def test_commands_from_the_shared_table_are_synced_globally(
    fake: FakeDiscord, discord_config: Any
) -> None:
    async with running(discord_config(), ScriptedProvider([])) as gateway:
        # memory's commands register after ready (the warm-up), and are synced then
        await gateway.warmup.wait()
        await _synced_with(fake, "forget")
        synced = {c["name"]: c for c in fake.commands["global"]}
        assert set(synced) == {spec.name for spec in gateway.commands}
        assert {"ask", "new", "status"} <= set(synced)
        assert synced["ask"]["options"] == [
            {"type": 3, "name": "question", "description": "<question>", "required": True}
        ]
        assert "options" not in synced["new"] or not synced["new"]["options"]
        forget = synced.get("forget")
        if forget is not None:  # "/forget [all | words]": the argument is optional
            assert forget["options"][0]["required"] is False
        # once per start: not the start's shorter table first (the warm-up's commands
        # deleted on every restart, then made again)
        assert len(fake.calls_to("PUT", "/commands")) == 1


async def _synced_with(fake: FakeDiscord, name: str) -> None:
    async def synced() -> None:
        while name not in {c["name"] for c in fake.commands.get("global", [])}:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(synced(), timeout=10)


async def test_commands_go_to_the_configured_guilds_only(
    fake: FakeDiscord, discord_config: Any
) -> None:
    async with running(discord_config(sync_commands_to=[int(GUILD_ID)]), ScriptedProvider([])):
        await fake.wait_for("PUT", "/commands", timeout=10)  # once the warm-up is over
        assert list(fake.commands) == [GUILD_ID]
        assert any(c["name"] == "ask" for c in fake.commands[GUILD_ID])


async def test_slash_command_is_acknowledged_then_streamed_into_the_placeholder(
    fake: FakeDiscord, discord_config: Any
) -> None:
    provider = FunctionProvider(slow_pieces(24, 0.1))
    async with running(discord_config(), provider) as gateway:
        start = len(fake.calls)
        sent = await fake.send_slash_command("ask", {"question": "what is a decapod?"})
        token = sent["token"]
        callback = await fake.wait_for("POST", "/callback", start=start)
        assert callback.body["type"] == 4, "a message at once, before the model is asked"
        assert callback.body["data"]["content"] == PLACEHOLDER
        assert callback.body["data"]["flags"] == 4, "created without link previews, for good"
        await fake.until(
            lambda: [t.strip() for t in fake.interaction_texts(token)] == [full(24).strip()], 10
        )
        await settle(gateway)
    assert provider.requests[0].messages[-1].content == "what is a decapod?"
    placeholder = fake.originals[token]
    edits = fake.calls_to("PATCH", f"/webhooks/{BOT_ID}/{token}/messages/{placeholder}")
    assert len(edits) >= 2, "the answer is streamed by editing the placeholder"
    assert callback.at <= edits[0].at
    gaps = [b.at - a.at for a, b in itertools.pairwise(edits)]
    assert min(gaps) >= 0.9, f"edits of @original at most about once a second: {gaps}"
    assert [t.strip() for t in fake.interaction_texts(token)] == [full(24).strip()]
    assert not fake.calls_to("POST", f"/channels/{CHANNEL_ID}/messages")


async def test_long_answer_continues_in_followups(fake: FakeDiscord, discord_config: Any) -> None:
    code = "```python\n" + "\n".join(f"print({i})" for i in range(150)) + "\n```"
    answer = "\n\n".join(
        [*(f"Paragraph {i}: " + "words " * 60 for i in range(8)), code, "The end."]
    )
    async with running(discord_config(), ScriptedProvider([answer])) as gateway:
        sent = await fake.send_slash_command("ask", {"question": "write a lot"})
        await fake.wait_for("POST", f"/webhooks/{BOT_ID}/{sent['token']}", count=2)
        await settle(gateway)
    texts = fake.interaction_texts(sent["token"])
    assert len(texts) >= 3 and all(len(t) <= 2000 for t in texts)
    assert all(t.count("```") % 2 == 0 for t in texts), "no message leaves a code block open"
    joined = " ".join(" ".join(texts).replace("```python", "").replace("```", "").split())
    assert joined == " ".join(answer.replace("```python", "").replace("```", "").split())
    placeholder = fake.originals[sent["token"]]
    assert fake.calls_to("PATCH", f"/messages/{placeholder}"), "the first part replaces it"
    assert all(m["flags"] == 4 for m in fake.messages.values()), "no link previews anywhere"


async def test_command_in_a_dm_is_answered_through_the_interaction(
    fake: FakeDiscord, discord_config: Any
) -> None:
    async with running(discord_config(), ScriptedProvider([])) as gateway:
        sent = await fake.send_slash_command("status", dm=True)
        await fake.until(lambda: "session:" in "".join(fake.interaction_texts(sent["token"])))
        await settle(gateway)
    (status,) = fake.interaction_texts(sent["token"])
    assert f"session: discord:dm:{ALICE}" in status


async def test_unknown_person_using_a_command_in_a_dm_gets_a_pairing_code(
    fake: FakeDiscord, discord_config: Any
) -> None:
    provider = ScriptedProvider([])
    config = discord_config(access={"dm_policy": "pairing"})
    async with running(config, provider) as gateway:
        sent = await fake.send_slash_command("ask", {"question": "hi"}, dm=True)
        await fake.until(lambda: "code" in "".join(fake.interaction_texts(sent["token"])))
        await settle(gateway)
    assert provider.requests == []


@pytest.mark.parametrize("case", ["token_nearly_expired", "too_late_to_acknowledge"])
async def test_old_interaction_is_answered_in_the_channel(
    fake: FakeDiscord, discord_config: Any, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    if case == "token_nearly_expired":
        # Discord took the acknowledgement, but the turn ran late: 14.5 of its 15 minutes are gone
        monkeypatch.setattr("tests.fakes.discord.INTERACTION_CALLBACK_S", 3600.0)
    async with running(discord_config(), ScriptedProvider(["late but here"])) as gateway:
        sent = await fake.send_slash_command(
            "ask", {"question": "still there?"}, created_at=time.time() - 14.5 * 60
        )
        await fake.wait_for("POST", f"/channels/{CHANNEL_ID}/messages")
        await settle(gateway)
    assert fake.texts_in(CHANNEL_ID)[-1] == "late but here"
    assert not fake.calls_to("POST", "/webhooks/") and not fake.calls_to("PATCH", "/webhooks/")
    acknowledged = fake.calls_to("POST", f"/{sent['token']}/callback")
    assert len(acknowledged) == (1 if case == "token_nearly_expired" else 0)


async def test_token_expiring_mid_answer_continues_in_the_channel_where_it_stopped(
    fake: FakeDiscord, discord_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock says the token is about to expire: the interaction's reply stays as it is,
    and the channel message starts, after a one-line note, where the reply stopped."""
    # a token usable for 1.5 s: the answer starts in the interaction and ends in the channel
    ttl = channels.discord_outbound.TOKEN_MARGIN_S + 1.5
    monkeypatch.setattr(channels.discord_outbound, "INTERACTION_TOKEN_TTL_S", ttl)
    async with running(discord_config(), FunctionProvider(slow_pieces(30, 0.1))) as gateway:
        sent = await fake.send_slash_command("ask", {"question": "long one"})
        token = sent["token"]

        def shown() -> str:
            return "".join(fake.texts_in(CHANNEL_ID)).replace(CONTINUED, "")

        await fake.until(lambda: "".join(shown().split()) == "".join(full(30).split()), 10)
        await settle(gateway)
    (reply,) = fake.interaction_texts(token)
    (moved,) = [t for t in fake.texts_in(CHANNEL_ID) if t != reply]
    assert reply.startswith("part 00") and moved.startswith(CONTINUED)
    rest = moved.removeprefix(CONTINUED)
    assert not rest.lstrip().startswith("part 00"), "nothing shown is repeated"
    assert "".join((reply + rest).split()) == "".join(full(30).split())
    assert len(fake.calls_to("POST", f"/channels/{CHANNEL_ID}/messages")) == 1
    assert not fake.calls_to("PATCH", "/webhooks/", status=401), "the clock said it first"


async def test_a_command_refused_silently_still_ends_the_thinking_state(
    fake: FakeDiscord, discord_config: Any
) -> None:
    """A listed channel that allows only some people: the others' commands are refused by
    the access layer without a model call, and the placeholder says so."""
    only_bob = {"dm_policy": "open", "groups": {CHANNEL_ID: {"allow_users": ["424242"]}}}
    provider = ScriptedProvider([])
    async with running(discord_config(access=only_bob), provider) as gateway:
        sent = await fake.send_slash_command("ask", {"question": "let me in?"})
        refusal = ["I can't answer that here."]
        await fake.until(lambda: fake.interaction_texts(sent["token"]) == refusal, 5)
        await settle(gateway)
    assert provider.requests == []


@pytest.mark.parametrize("placeholder_deleted", [False, True], ids=["waiting", "deleted"])
async def test_answer_after_a_restart_replaces_the_placeholder(
    fake: FakeDiscord, discord_config: Any, placeholder_deleted: bool
) -> None:
    """The turn did not finish before a stop; at the next start the delivery runs again and
    its answer still replaces the placeholder (read back from Discord to see it is unused),
    or comes as a followup when someone deleted the placeholder meanwhile."""
    stuck = asyncio.Event()

    async def never(request: ChatRequest) -> AsyncIterator[ChatEvent]:
        await stuck.wait()
        yield TextDelta("never shown")

    config = discord_config()
    config.gateway.shutdown_grace_s = 0.2
    async with running(config, FunctionProvider(never)):
        sent = await fake.send_slash_command("ask", {"question": "survive a restart?"})
        token = sent["token"]
        await fake.wait_for("POST", f"/{token}/callback")
    assert fake.interaction_texts(token) == [PLACEHOLDER]
    placeholder = fake.originals[token]
    if placeholder_deleted:
        del fake.messages[placeholder]
    async with running(config, ScriptedProvider(["after the restart"])) as gateway:
        await fake.until(lambda: fake.interaction_texts(token) == ["after the restart"])
        await settle(gateway)
    assert fake.calls_to("GET", f"/webhooks/{BOT_ID}/{token}/messages/{placeholder}", status=None)
    followups = fake.calls_to("POST", f"/webhooks/{BOT_ID}/{token}")
    assert len(followups) == (1 if placeholder_deleted else 0)
    assert not fake.calls_to("POST", f"/channels/{CHANNEL_ID}/messages")
