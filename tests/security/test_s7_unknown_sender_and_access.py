"""S7 (the access part) and the access policies: unknown people cost nothing."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from bot.gateway import Gateway
from bot.messages import ConversationKind
from bot.providers.testing import FunctionProvider, ScriptedProvider
from bot.security.access import CODE_ALPHABET, CODE_LENGTH
from tests.fakes.channel import RecordingChannel


def _config(make_config: Any, **access: Any) -> Any:
    return make_config(
        gateway={"owners": ["test:boss"]},
        channels={"test": {"type": "telegram", "access": access}},
    )


async def _settle(gw: Gateway) -> None:
    await asyncio.wait_for(gw.sessions.wait_idle(), 10)
    await asyncio.sleep(0.02)  # replies are sent by the turn before it ends; this is slack


async def test_s7_unknown_dm_gets_one_pairing_code_and_no_llm_call(make_config: Any) -> None:
    provider = ScriptedProvider(["hello stranger"])
    channel = RecordingChannel(console=False)
    async with Gateway(_config(make_config), provider=provider, channels={"test": channel}) as gw:
        for text in ("hi", "hello?", "anyone?"):
            await channel.push(text, user="stranger")
        await _settle(gw)
        assert provider.requests == []
        [notice] = channel.texts("stranger")
        code = re.search(rf"[{CODE_ALPHABET}]{{{CODE_LENGTH}}}", notice).group(0)  # type: ignore[union-attr]
        # the owner is asked once, and approves from chat; the next message reaches the model
        [request] = channel.texts("boss")
        assert f"code {code}" in request and f"Approve: /pair {code}" in request
        await channel.push(f"/pair {code}", user="boss")
        await channel.wait_for_messages(2, chat_id="boss")
        assert channel.texts("boss")[1].startswith("Approved")
        await channel.push("now?", user="stranger")
        assert (await channel.wait_for_messages(2, chat_id="stranger"))[-1] == "hello stranger"
    assert len(provider.requests) == 1


async def test_groups_need_the_allowlist_and_a_mention(make_config: Any) -> None:
    async def answer(request: Any) -> str:
        return "re: " + request.messages[-1].content

    provider = FunctionProvider(answer)
    channel = RecordingChannel(console=False)
    config = _config(make_config, groups={"g-ok": {}, "g-chatty": {"require_mention": False}})
    async with Gateway(config, provider=provider, channels={"test": channel}) as gw:
        group = ConversationKind.GROUP
        await channel.push("hello all", chat="g-other", kind=group, mentioned=True)
        await channel.push("chatter", chat="g-ok", kind=group)
        await channel.push("@bot question", chat="g-ok", kind=group, mentioned=True)
        await channel.push("no mention needed", chat="g-chatty", kind=group)
        await _settle(gw)
    assert channel.texts("g-other") == [] and channel.texts("g-ok") == ["re: @bot question"]
    assert channel.texts("g-chatty") == ["re: no mention needed"]
    assert len(provider.requests) == 2


async def test_other_bots_are_ignored_to_avoid_loops(make_config: Any) -> None:
    provider = ScriptedProvider([])
    channel = RecordingChannel(console=False)
    config = _config(make_config, dm_policy="open", groups={"*": {"require_mention": False}})
    async with Gateway(config, provider=provider, channels={"test": channel}) as gw:
        message = channel.inbound("ping", user="otherbot", chat="g", kind=ConversationKind.GROUP)
        from dataclasses import replace

        bot_message = replace(message, identity=replace(message.identity, is_bot=True))
        await channel.sink(bot_message)  # type: ignore[misc]
        await _settle(gw)
    assert provider.requests == [] and channel.texts() == []


async def test_allowlist_and_disabled_policies_stay_silent(make_config: Any) -> None:
    provider = ScriptedProvider(["for friend"])
    channel = RecordingChannel(console=False)
    config = _config(make_config, dm_policy="allowlist", allow_users=["friend"])
    async with Gateway(config, provider=provider, channels={"test": channel}) as gw:
        await channel.push("hi", user="stranger")
        await channel.push("hi", user="friend")
        await _settle(gw)
    assert channel.texts("stranger") == [] and channel.texts("friend") == ["for friend"]


async def test_cli_approves_a_code(make_config: Any, home: Any) -> None:
    from bot.cli import main

    channel = RecordingChannel(console=False)
    config = _config(make_config)
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": channel}) as gw:
        await channel.push("hi", user="newbie")
        await _settle(gw)
        [code] = [c.code for c in await gw.store.access.pending()]
    assert await asyncio.to_thread(main, ["pairing", "approve", code.lower()]) == 0
    assert await asyncio.to_thread(main, ["pairing", "approve", code]) == 1
