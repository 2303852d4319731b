"""Buttons end to end through discord.py's views: the owner approves a sandbox command with a
tap; someone else's tap, a tap on an expired request and a second tap get an ephemeral
answer and change nothing; buttons sent before a restart still work after it."""

from __future__ import annotations

import shutil
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.providers.testing import ScriptedProvider
from channels.buttons import EXPIRED, NOT_YOURS
from tests.channels.conftest import runs_a_command
from tests.channels.discord.conftest import TOKEN_ENV, settle
from tests.fakes.discord import ALICE, BOB, FakeDiscord

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
EPHEMERAL = 64


def _config(make_config: Any, fake: FakeDiscord, **sections: Any) -> Any:
    channel = {
        "type": "discord",
        "token_env": TOKEN_ENV,
        "api_base_url": fake.api_base,
        "gateway_url": fake.gateway_url,
        "access": {"dm_policy": "pairing", "allow_users": [BOB], "groups": {"*": {}}},
    }
    sections.setdefault("sandbox", {"backend": "none"})
    return make_config(
        channels={"discord": channel},
        gateway={"owners": [f"discord:{ALICE}"]},
        memory={"enabled": False},
        **sections,
    )


def _refusals(fake: FakeDiscord, *presses: dict[str, Any]) -> list[str]:
    answers = [body for press in presses for body in fake.callback_answers(press)]
    return [
        a["data"]["content"]
        for a in answers
        if a["type"] == 4 and a["data"].get("flags", 0) & EPHEMERAL
    ]


@needs_bwrap
async def test_the_owner_approves_with_a_tap_once_and_other_taps_change_nothing(
    make_config: Any, fake: FakeDiscord
) -> None:
    dm = fake.dm_channel_id(ALICE)
    sandbox = {"backend": "bwrap", "approval": "always"}
    async with Gateway(
        _config(make_config, fake, sandbox=sandbox), provider=runs_a_command()
    ) as gw:
        await fake.send_message("tidy up", dm=True)
        await fake.until(lambda: fake.buttons_in(dm)[1], timeout=15)
        message_id, keys = fake.buttons_in(dm)
        assert [label for label, _ in keys] == ["Approve", "Deny"]
        approve = keys[0][1]
        assert fake.messages[message_id]["content"].startswith("Approval needed")

        foreign = await fake.press(message_id, approve, user=fake.user(BOB, "bob"))
        await fake.until(lambda: fake.callback_answers(foreign))
        assert _refusals(fake, foreign) == [NOT_YOURS]
        assert fake.buttons_in(dm) == (message_id, keys), "the buttons stay for the owner"

        first = await fake.press(message_id, approve)
        second = await fake.press(message_id, approve)
        await fake.until(lambda: fake.callback_answers(first) and fake.callback_answers(second))
        await fake.until(lambda: any(t.startswith("result:") for t in fake.texts_in(dm)), 20)
        await settle(gw)
    [update] = fake.callback_answers(first)
    assert update["type"] == 7 and update["data"]["components"] == []
    assert _refusals(fake, second) == [EXPIRED]
    texts = [m["content"] for m in fake.messages.values() if not m["flags"] & EPHEMERAL]
    assert texts.count("Approved.") == 1
    assert any("ran-42" in t for t in texts if t.startswith("result:"))
    assert fake.buttons_in(dm) == ("", []), "the decided message lost its buttons"
    assert fake.messages[message_id]["content"].endswith("→ Approve (Alice)")


@needs_bwrap
async def test_a_tap_on_an_expired_request_changes_nothing(
    make_config: Any, fake: FakeDiscord
) -> None:
    dm = fake.dm_channel_id(ALICE)
    sandbox = {"backend": "bwrap", "approval": "always", "approval_timeout_s": 0.5}
    async with Gateway(
        _config(make_config, fake, sandbox=sandbox), provider=runs_a_command()
    ) as gw:
        await fake.send_message("tidy up", dm=True)
        await fake.until(lambda: any(t.startswith("result:") for t in fake.texts_in(dm)), 20)
        message_id, keys = fake.buttons_in(dm)
        late = await fake.press(message_id, keys[0][1])
        await fake.until(lambda: fake.callback_answers(late))
        await settle(gw)
        stored = await gw.store.inbound.status("discord", f"press:{late['id']}")
    assert _refusals(fake, late) == [EXPIRED]
    assert stored is None, "an expired press never reaches the inbox"
    texts = fake.texts_in(dm)
    assert any("not run" in t for t in texts) and not any("ran-42" in t for t in texts)
    assert not any(t.startswith(("Approved", "No pending")) for t in texts)


async def test_a_pairing_request_is_approved_with_a_tap_after_a_restart(
    make_config: Any, fake: FakeDiscord
) -> None:
    stranger = fake.user("1200000000000000077", "sam")
    owner_dm = fake.dm_channel_id(ALICE)
    config = _config(make_config, fake)
    provider = ScriptedProvider(["hello stranger"])
    async with Gateway(config, provider=provider):
        await fake.send_message("hi", dm=True, author=stranger)
        await fake.until(lambda: fake.buttons_in(owner_dm)[1])
    message_id, keys = fake.buttons_in(owner_dm)
    assert [label for label, _ in keys] == ["Approve", "Deny"]
    async with Gateway(config, provider=provider) as gw:
        press = await fake.press(message_id, keys[0][1])
        await fake.until(lambda: any(t.startswith("Approved Sam") for t in fake.texts_in(owner_dm)))
        await fake.send_message("now?", dm=True, author=stranger)
        await fake.until(
            lambda: "hello stranger" in fake.texts_in(fake.dm_channel_id(stranger["id"]))
        )
        await settle(gw)
    assert fake.callback_answers(press)[0]["type"] == 7
    assert fake.buttons_in(owner_dm) == ("", [])
