"""Inline keyboards end to end through python-telegram-bot: the owner approves a sandbox
command with a tap; someone else's tap, a tap on an expired request and a second tap are
answered with an alert and change nothing; a pairing request's buttons still work after a
restart."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.messages import Choice, Conversation, ConversationKind, OutboundMessage
from bot.providers.testing import ScriptedProvider
from channels.buttons import EXPIRED, NOT_YOURS
from channels.telegram_html import markdown_to_html, utf16_len
from tests.channels.conftest import runs_a_command
from tests.channels.telegram.conftest import ALICE, channel_table, settled, until
from tests.fakes.telegram import FakeTelegram

BOB = 43
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


def _config(make_config: Callable[..., Any], fake: FakeTelegram, **sandbox: Any) -> Any:
    return make_config(
        channels={
            "tg": channel_table(fake, access={"dm_policy": "pairing", "allow_users": [str(BOB)]})
        },
        gateway={"owners": [f"tg:{ALICE}"]},
        sandbox={"backend": "bwrap", "approval": "always", **sandbox},
        memory={"enabled": False},
    )


async def _answer(fake: FakeTelegram, update: dict[str, Any]) -> dict[str, Any]:
    query_id = update["callback_query"]["id"]
    return await fake.wait_for("answerCallbackQuery", timeout=10, callback_query_id=query_id)


@needs_bwrap
async def test_the_owner_approves_with_a_tap_once_and_other_taps_change_nothing(
    fake: FakeTelegram, make_config: Callable[..., Any]
) -> None:
    async with Gateway(_config(make_config, fake), provider=runs_a_command()) as gw:
        fake.push_private("tidy up", user_id=ALICE)
        await until(lambda: fake.buttons(ALICE)[1], timeout=15)
        message_id, keys = fake.buttons(ALICE)
        assert [label for label, _ in keys] == ["Approve", "Deny"]
        approve = keys[0][1]
        assert approve.startswith("b:") and len(approve.encode()) <= 64
        ask = fake.texts(ALICE)[-1]
        assert "Approval needed" in ask and "/approve" not in ask  # the buttons say it

        foreign = fake.push_press(ALICE, message_id, approve, user_id=BOB, first_name="Bob")
        refusal = await _answer(fake, foreign)
        assert refusal["text"] == NOT_YOURS and refusal["show_alert"] is True
        assert fake.buttons(ALICE) == (message_id, keys), "the buttons stay for the owner"

        first = fake.push_press(ALICE, message_id, approve)
        second = fake.push_press(ALICE, message_id, approve)
        taken, again = await _answer(fake, first), await _answer(fake, second)
        await until(lambda: any(t.startswith("result:") for t in fake.texts(ALICE)), timeout=20)
        await settled(gw)
    assert "text" not in taken or not taken["text"]
    assert again["text"] == EXPIRED and again["show_alert"] is True
    texts = fake.texts(ALICE)
    assert texts.count("Approved.") == 1
    assert "ran-42" in texts[-1]
    assert fake.buttons(ALICE) == (0, []), "the decided message lost its buttons"
    decided = fake.messages[(ALICE, message_id)]["text"]
    assert decided.startswith("Approval needed") and decided.endswith("→ Approve (Alice)")
    assert not any("not yours" in t.lower() for t in texts), "a refusal is an alert only"


@needs_bwrap
async def test_a_tap_on_an_expired_request_or_an_unknown_button_changes_nothing(
    fake: FakeTelegram, make_config: Callable[..., Any]
) -> None:
    config = _config(make_config, fake, approval_timeout_s=0.5)
    async with Gateway(config, provider=runs_a_command()) as gw:
        fake.push_private("tidy up", user_id=ALICE)
        await until(lambda: any(t.startswith("result:") for t in fake.texts(ALICE)), timeout=20)
        message_id, keys = fake.buttons(ALICE)
        late = fake.push_press(ALICE, message_id, keys[0][1])
        unknown = fake.push_press(ALICE, message_id, "b:no-such-token")
        late_answer, unknown_answer = await _answer(fake, late), await _answer(fake, unknown)
        await settled(gw)
        stored = await gw.store.inbound.status("tg", f"press:{late['callback_query']['id']}")
    assert late_answer["text"] == EXPIRED and late_answer["show_alert"] is True
    assert unknown_answer["text"] == EXPIRED
    assert stored is None, "an expired press never reaches the inbox"
    texts = fake.texts(ALICE)
    assert "not run" in texts[-1] and "ran-42" not in texts[-1]
    assert not any(t.startswith(("Approved", "No pending")) for t in texts)


async def test_a_pairing_request_is_approved_with_a_tap_after_a_restart(
    fake: FakeTelegram, make_config: Callable[..., Any]
) -> None:
    stranger = 77
    config = make_config(
        channels={"tg": channel_table(fake)},
        gateway={"owners": [f"tg:{ALICE}"]},
        sandbox={"backend": "none"},
        memory={"enabled": False},
    )
    provider = ScriptedProvider(["hello stranger"])
    async with Gateway(config, provider=provider):
        fake.push_private("hi", user_id=stranger, first_name="Sam")
        await until(lambda: fake.buttons(ALICE)[1])
    message_id, keys = fake.buttons(ALICE)
    assert [label for label, _ in keys] == ["Approve", "Deny"]
    assert "Sam" in fake.texts(ALICE)[-1]
    async with Gateway(config, provider=provider) as gw:
        press = fake.push_press(ALICE, message_id, keys[0][1])
        await _answer(fake, press)
        await until(lambda: any(t.startswith("Approved Sam") for t in fake.texts(ALICE)))
        fake.push_private("now?", user_id=stranger, first_name="Sam")
        await until(lambda: "hello stranger" in fake.texts(stranger))
        await settled(gw)
    assert fake.buttons(ALICE) == (0, [])


async def test_a_tap_from_a_name_with_half_an_emoji_is_taken_and_stored(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    """A client that cut an emoji in half sends a lone surrogate in the presser's name; the
    press is cleaned like a typed message, so the store takes it and the command runs."""
    stranger = 77
    async with Gateway(tg_config(), provider=ScriptedProvider(["hello stranger"])) as gw:
        fake.push_private("hi", user_id=stranger, first_name="Sam")
        await until(lambda: fake.buttons(ALICE)[1])
        message_id, keys = fake.buttons(ALICE)
        press = fake.push_press(ALICE, message_id, keys[0][1], first_name="Alice \ud83d")
        await _answer(fake, press)
        await until(lambda: any(t.startswith("Approved Sam") for t in fake.texts(ALICE)))
        await settled(gw)
        stored = await gw.store.inbound.status("tg", f"press:{press['callback_query']['id']}")
    assert stored is not None, "the press reached the inbox"
    decided = fake.messages[(ALICE, message_id)]["text"]
    assert decided.endswith("→ Approve (Alice \ufffd)")


async def test_a_tap_whose_message_can_no_longer_be_edited_holds_up_no_later_update(
    fake: FakeTelegram, make_config: Callable[..., Any]
) -> None:
    """The bot may no longer write in the group (its rights were taken): a tap on one of
    its old buttons still runs the command, and the refused edit of that message is left
    as it is; the updates after it (any chat's) are still read."""
    group = -1001234567890
    config = make_config(
        channels={"tg": channel_table(fake, access={"groups": {str(group): {}}})},
        gateway={"owners": [f"tg:{ALICE}"]},
        models={"chat": ["local:llama3.2", "local:qwen3"]},
        sandbox={"backend": "none"},
        memory={"enabled": False},
    )
    async with Gateway(config, provider=ScriptedProvider(["hi"])) as gw:
        fake.push_group("/model", chat_id=group)
        await until(lambda: fake.buttons(group)[1], timeout=15)
        message_id, keys = fake.buttons(group)
        fake.refuse(group, 400, "Bad Request: not enough rights to send text messages to the chat")
        await _answer(fake, fake.push_press(group, message_id, keys[0][1]))
        fake.push_private("/status", user_id=ALICE)
        await until(lambda: any(t.startswith("Decapod") for t in fake.texts(ALICE)), timeout=15)
        await settled(gw)
        assert await gw.model_choices.own(f"tg:{ALICE}") == "local:qwen3"  # the tap ran


async def test_a_question_that_fills_a_message_still_shows_the_decision_after_a_tap(
    fake: FakeTelegram, start_channel: Callable[..., Any]
) -> None:
    channel = await start_channel()
    code = "\n".join(f"rm -rf /tmp/cache/{i:04d} # é" for i in range(135))
    question = "Approval needed to run:\n" + code + "\nRun it?"
    # one message that Telegram takes with no room to spare (4096 UTF-16 units, as shown)
    question += "." * (4096 - utf16_len(markdown_to_html(question)))
    ask = OutboundMessage(
        Conversation("tg", str(ALICE), ConversationKind.DM),
        question,
        choices=(Choice("Approve", "/approve a1"), Choice("Deny", "/deny a1")),
    )
    await channel.send(ask)
    message_id, keys = fake.buttons(ALICE)
    assert len(fake.texts(ALICE)) == 1

    await _answer(fake, fake.push_press(ALICE, message_id, keys[0][1]))

    # the press is stored whatever the edit does; the message must lose its spent buttons
    await until(lambda: fake.buttons(ALICE) == (0, []), timeout=10)
    decided = fake.messages[(ALICE, message_id)]["text"]
    assert decided.startswith("Approval needed") and decided.endswith("→ Approve (Alice)")
    assert "rm -rf /tmp/cache/0000" in decided
