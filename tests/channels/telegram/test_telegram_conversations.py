"""DMs, pairing, groups, forum topics and migrations, end to end: the fake Bot API -> real
python-telegram-bot -> the adapter -> the real Gateway -> a scripted provider -> back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bot.gateway import Gateway
from bot.providers.testing import FunctionProvider, ScriptedProvider
from tests.channels.telegram.conftest import ALICE, GROUP, payload, settled, until
from tests.fakes.telegram import FakeTelegram

BOB = 43


async def test_dm_conversation_with_typing_html_and_no_link_previews(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    async def thinking(request: Any) -> str:
        await asyncio.sleep(0.3)  # long enough for the typing indicator
        return "Hi **Alice**! See https://example.com"

    provider = ScriptedProvider([thinking, "You said hello."])
    async with Gateway(tg_config(), provider=provider) as gw:
        commands = await fake.wait_for("setMyCommands")
        names = {c["command"] for c in commands["commands"]}
        assert {"help", "new", "status"} <= names and "pair" not in names  # owner-only
        await fake.wait_for("setMyCommands", scope={"type": "chat", "chat_id": ALICE})
        owner_menu = fake.calls_of("setMyCommands", scope={"type": "chat", "chat_id": ALICE})
        assert owner_menu and "pair" in {c["command"] for c in owner_menu[0].params["commands"]}
        assert fake.calls_of("deleteWebhook")[0].params["drop_pending_updates"] is False

        fake.push_private("hello", user_id=ALICE)
        sent = await fake.wait_for("sendMessage", chat_id=ALICE)
        await until(lambda: fake.texts(ALICE) == ["Hi Alice! See https://example.com"])
        assert sent["parse_mode"] == "HTML" and "<b>Alice</b>" in sent["text"]
        assert sent["link_preview_options"] == {"is_disabled": True}
        assert "reply_parameters" not in sent  # no quote in a DM
        assert fake.calls_of("sendChatAction", chat_id=ALICE, action="typing")
        await settled(gw)

        fake.push_private("hello again", user_id=ALICE)
        await until(lambda: fake.texts(ALICE)[-1:] == ["You said hello."])
        await settled(gw)
    second = provider.requests[1].messages
    assert [m.content for m in second] == [
        "hello",
        "Hi **Alice**! See https://example.com",
        "hello again",
    ]


async def test_unknown_dm_sender_gets_only_a_pairing_code_and_costs_no_model_call(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    provider = ScriptedProvider([])
    async with Gateway(tg_config(), provider=provider) as gw:
        for text in ("hi", "hello?", "anyone there?"):
            fake.push_private(text, user_id=BOB, first_name="Bob")
        await fake.wait_for("sendMessage", chat_id=BOB)
        await until(lambda: len(fake.pending) == 0 and fake.confirmed_below() > 0)
        await until(lambda: gw.metrics.denied.labels("tg")._value.get() == 3)
    notices = fake.calls_of("sendMessage", chat_id=BOB)
    assert len(notices) == 1, "one notice per interval, however many messages"
    assert "code" in notices[0].params["text"]
    assert notices[0].params["link_preview_options"] == {"is_disabled": True}
    assert provider.requests == []
    assert not fake.calls_of("sendChatAction", chat_id=BOB)


async def test_group_answers_when_mentioned_or_replied_to_unless_configured_otherwise(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    open_group = -1005550000000
    config = tg_config(
        access={"groups": {str(GROUP): {}, str(open_group): {"require_mention": False}}}
    )
    provider = FunctionProvider(lambda request: f"re: {request.messages[-1].content}")
    async with Gateway(config, provider=provider) as gw:
        fake.push_group("talking among ourselves", chat_id=GROUP)
        fake.push_group("/help@other_bot", chat_id=GROUP)
        mention = fake.push_group("@decapod_test_bot what is 2+2?", chat_id=GROUP)
        await until(lambda: fake.texts(GROUP) == ["re: what is 2+2?"])
        reply = await fake.wait_for("sendMessage", chat_id=GROUP)
        assert reply["reply_parameters"]["message_id"] == mention["message"]["message_id"]

        bot_message = dict(fake.messages[fake.sent_order[-1]])
        fake.push_group("and 3+3?", chat_id=GROUP, reply_to=bot_message)
        await until(lambda: fake.texts(GROUP)[-1:] == ["re: and 3+3?"])

        fake.push_group("/help@decapod_test_bot", chat_id=GROUP)
        await until(lambda: len(fake.texts(GROUP)) == 3)
        assert "/new" in fake.texts(GROUP)[-1]

        fake.push_group("no mention needed here", chat_id=open_group)
        await until(lambda: fake.texts(open_group) == ["re: no mention needed here"])
        fake.push_group("@decapod_test_bot hi", chat_id=-1009999999999)  # not allowlisted
        fake.push_update(payload("bot_sender"))  # another bot, mentioning us: not answered
        # "/help@other_bot" is dropped by the adapter: the three others are denied
        await until(lambda: not fake.pending and gw.metrics.denied.labels("tg")._value.get() == 3)
        await settled(gw)
    asked = [r.messages[-1].content for r in provider.requests]
    assert asked == ["what is 2+2?", "and 3+3?", "no mention needed here"]
    assert not fake.calls_of("sendMessage", chat_id=-1009999999999)


async def test_each_forum_topic_is_its_own_session(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    forum = -1009876543210
    config = tg_config(access={"groups": {str(forum): {"require_mention": False}}})
    provider = FunctionProvider(lambda request: f"seen {len(request.messages)}")
    async with Gateway(config, provider=provider) as gw:
        fake.push_group("trip: day one", chat_id=forum, thread_id=77)
        await fake.wait_for("sendMessage", chat_id=forum, message_thread_id=77)
        fake.push_group("budget: 100", chat_id=forum, thread_id=88)
        await fake.wait_for("sendMessage", chat_id=forum, message_thread_id=88)
        fake.push_group("trip: day two", chat_id=forum, thread_id=77)
        await until(lambda: len(fake.calls_of("sendMessage", message_thread_id=77)) == 2)
        await settled(gw)
        assert {s for s in gw.sessions._sessions} >= {
            f"tg:group:{forum}:thread:77",
            f"tg:group:{forum}:thread:88",
        }
    histories = [[m.content for m in r.messages] for r in provider.requests]
    assert histories[1] == ["budget: 100"]
    assert histories[2] == ["trip: day one", "seen 1", "trip: day two"]


async def test_group_migrated_to_a_supergroup_keeps_its_session(
    fake: FakeTelegram, tg_config: Callable[..., Any], home: Any
) -> None:
    old, new = -4000001, -1004000001
    config = tg_config(access={"groups": {str(old): {"require_mention": False}}})
    provider = FunctionProvider(lambda request: f"history {len(request.messages)}")
    async with Gateway(config, provider=provider) as gw:
        fake.push_group("before the upgrade", chat_id=old, chat_type="group")
        await fake.wait_for("sendMessage", chat_id=old)
        await settled(gw)
        fake.push_update(payload("migrate_to"))
        fake.push_update(payload("migrate_from"))
        fake.migrated[old] = new
        fake.push_group("after the upgrade", chat_id=new)
        await fake.wait_for("sendMessage", chat_id=new)
        await settled(gw)
        # the conversation keeps the old id; sends go to the new one
        assert gw.channels["tg"].migrations.current(old) == new  # type: ignore[attr-defined]
    assert provider.requests[1].messages[0].content == "before the upgrade"
    assert fake.texts(new) == ["history 3"]
    async with Gateway(config, provider=provider) as gw:
        # the move is in the store: a restart (or another replica) sends to the new id
        assert gw.channels["tg"].migrations.current(old) == new  # type: ignore[attr-defined]
    assert not (home / "telegram-tg-chats.json").exists(), "no file in the home any more"


async def test_the_command_menu_gets_the_commands_registered_after_ready(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    # memory's /forget and /link register in the warm-up, after the channel set its menu
    config = tg_config()
    config.memory.enabled = True
    async with Gateway(config, provider=ScriptedProvider([])) as gw:
        await gw.warmup.wait()
        assert {"forget", "link"} <= {spec.name for spec in gw.commands}

        def menu_has_forget() -> bool:
            menus = [c.params["commands"] for c in fake.calls_of("setMyCommands", scope=None)]
            return any("forget" in {c["command"] for c in menu} for menu in menus)

        await until(menu_has_forget)
        # set once per start, not with the start's shorter table first
        assert len(fake.calls_of("setMyCommands", scope=None)) == 1


async def test_a_command_for_another_bot_is_not_answered_where_no_mention_is_needed(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    # A group that needs no mention still holds other bots: "/start@other_bot" is theirs.
    config = tg_config(access={"groups": {str(GROUP): {"require_mention": False}}})
    provider = FunctionProvider(lambda request: f"re: {request.messages[-1].content}")
    async with Gateway(config, provider=provider) as gw:
        fake.push_group("/start@other_bot", chat_id=GROUP)
        fake.push_group("/weather@other_bot Paris", chat_id=GROUP)
        fake.push_group("and now for us", chat_id=GROUP)
        await until(lambda: fake.texts(GROUP)[-1:] == ["re: and now for us"])
        await settled(gw)
    assert [r.messages[-1].content for r in provider.requests] == ["and now for us"]
    assert fake.texts(GROUP) == ["re: and now for us"]
