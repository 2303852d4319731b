"""Buttons in the core: a command's buttons answer the person who asked, once; a press the
inbox could not take gives them back; /approve alone offers a button per waiting thing;
a pairing request can be denied."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from bot.approvals import Waiting
from bot.errors import StoreError
from bot.gateway import Gateway
from bot.messages import Choice, Conversation, Identity, InboundMessage, OutboundMessage
from bot.providers.testing import ScriptedProvider
from bot.security.access import CODE_ALPHABET, CODE_LENGTH
from bot.store import Store
from channels.buttons import EXPIRED, NOT_YOURS, ButtonBook, Press, Pressed, Refused, hand_on
from tests.fakes.channel import RecordingChannel


class _Waiting:
    """An approval source with one thing waiting, that records its decisions."""

    def __init__(self) -> None:
        self.decided: list[tuple[str, bool]] = []

    async def waiting(self) -> list[Waiting]:
        return [] if self.decided else [Waiting("k1", "paint the fence")]

    async def decide(self, key: str, approve: bool) -> str | None:
        if key != "k1" or self.decided:
            return None
        self.decided.append((key, approve))
        return "Approved." if approve else "Denied."


def _buttons_channel() -> RecordingChannel:
    channel = RecordingChannel(console=True)
    channel.supports_buttons = True
    return channel


async def test_approve_alone_offers_buttons_only_the_asker_can_use_once(make_config: Any) -> None:
    source = _Waiting()
    channel = _buttons_channel()
    async with Gateway(
        make_config(), provider=ScriptedProvider([]), channels={"test": channel}
    ) as gw:
        gw.approvals.add(source)
        await channel.push("/approve", user="owner")
        [listing] = await channel.wait_for_messages(1, chat_id="owner")
        [buttons] = channel.button_rows.values()
        assert listing == "k1: paint the fence"
        assert [b.label for b in buttons] == ["Approve k1", "Deny k1"]
        bob = Identity("test", "bob", "Bob")
        owner = Identity("test", "owner", "Owner")
        foreign = await channel.take_press(Press("p1", buttons[0].token, bob))
        taken = await channel.take_press(Press("p2", buttons[0].token, owner))
        again = await channel.take_press(Press("p3", buttons[1].token, owner))
        await channel.wait_for_messages(2, chat_id="owner")
        await asyncio.wait_for(gw.sessions.wait_idle(), 10)
    assert foreign == Refused(NOT_YOURS)
    assert isinstance(taken, Pressed) and taken.command == "/approve k1"
    assert again == Refused(EXPIRED)
    assert source.decided == [("k1", True)]
    assert channel.texts("owner")[1] == "Approved."


async def test_a_press_the_inbox_could_not_take_can_be_pressed_again(tmp_path: Any) -> None:
    async with Store(tmp_path / "decapod.db") as store:
        await _press_given_back(store)


async def _press_given_back(store: Store) -> None:
    book = ButtonBook(None)
    book.use(store.channel_state, "test")
    conversation = Conversation("test", "c1")
    offer = OutboundMessage(
        conversation, "Pick one", choices=(Choice("Yes", "/yes"),), choices_for=("test:u1",)
    )
    [button] = await book.issue(offer, offer.text)
    stored: list[InboundMessage] = []

    async def failing(message: InboundMessage) -> None:
        raise StoreError("disk full")

    async def storing(message: InboundMessage) -> None:
        stored.append(message)

    una = Identity("test", "u1", "Una")
    with pytest.raises(StoreError):
        await hand_on(book, failing, Press("p1", button.token, una), {})
    # a new process reads the same store: the press that failed left the buttons usable
    again = Press("p2", button.token, una)
    other = ButtonBook(None)
    other.use(store.channel_state, "test")
    result = await hand_on(other, storing, again, {})
    assert isinstance(result, Pressed) and result.shown == "Pick one\n\n→ Yes (Una)"
    [message] = stored
    assert (message.id, message.text, message.identity.key) == ("press:p2", "/yes", "test:u1")
    assert message.command is not None and message.command.name == "yes"
    assert message.conversation == conversation


async def test_the_owner_denies_a_pairing_request(make_config: Any) -> None:
    channel = RecordingChannel(console=False)
    config = make_config(
        gateway={"owners": ["test:boss"]},
        channels={"test": {"type": "telegram", "access": {"dm_policy": "pairing"}}},
    )
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": channel}) as gw:
        await channel.push("hi", user="stranger")
        [notice] = await channel.wait_for_messages(1, chat_id="stranger")
        code = re.search(rf"[{CODE_ALPHABET}]{{{CODE_LENGTH}}}", notice).group(0)  # type: ignore[union-attr]
        [request] = await channel.wait_for_messages(1, chat_id="boss")
        assert f"Deny: /pair deny {code}" in request
        await channel.push(f"/pair deny {code}", user="boss")
        await channel.push(f"/pair {code}", user="boss")
        texts = await channel.wait_for_messages(3, chat_id="boss")
        paired = await gw.store.access.is_paired("test", "stranger")
    assert texts[1] == "Denied Stranger on test."
    assert texts[2] == f"No pending pairing code {code} (it may have expired)."
    assert not paired
