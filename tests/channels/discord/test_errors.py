"""What a Discord error means for the send path, through the real discord.py against faults
injected at the fake: a message that can no longer be edited (EditRejected), a send Discord
will never accept (DeliveryRefused, ConversationGone), and everything else transient."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bot.errors import ChannelError, ConversationGone, DeliveryRefused, EditRejected
from bot.messages import Conversation, ConversationKind, OutboundMessage, SentRef
from bot.providers.testing import ScriptedProvider
from tests.channels.discord.conftest import channel_of, running, settle
from tests.fakes.discord import ALICE, BOT_ID, CHANNEL_ID, FakeDiscord

IN_GENERAL = Conversation("discord", CHANNEL_ID, ConversationKind.CHANNEL)


async def test_edit_of_a_deleted_message_is_rejected_and_a_5xx_is_transient(
    fake: FakeDiscord, discord_config: Any
) -> None:
    async with running(discord_config(), ScriptedProvider([])) as gateway:
        channel = channel_of(gateway)
        ref = await channel._send_text(OutboundMessage(IN_GENERAL, "one"), "one")
        fake.fail("PATCH", f"/messages/{ref.message_id}", 503, 0, "Service Unavailable")
        with pytest.raises(ChannelError) as transient:
            await channel._edit_text(ref, "one two")
        fake.fail("PATCH", f"/messages/{ref.message_id}", 404, 10008, "Unknown Message")
        with pytest.raises(EditRejected, match="Unknown Message"):
            await channel._edit_text(ref, "one two")
        await channel._edit_text(ref, "one two three")
    assert type(transient.value) is ChannelError, "retried by the send path, not given up"
    assert fake.messages[ref.message_id]["content"] == "one two three"


@pytest.mark.parametrize(
    ("status", "code", "text", "refusal"),
    [
        (403, 50001, "Missing Access", ConversationGone),
        (404, 10003, "Unknown Channel", ConversationGone),
        (403, 50013, "Missing Permissions", DeliveryRefused),
        (400, 50035, "Invalid Form Body", DeliveryRefused),
    ],
)
async def test_a_send_discord_refuses_is_a_refusal_with_its_reason(
    fake: FakeDiscord, discord_config: Any, status: int, code: int, text: str, refusal: type
) -> None:
    fake.fail("POST", f"/channels/{CHANNEL_ID}/messages", status, code, text, times=None)
    async with running(discord_config(), ScriptedProvider([])) as gateway:
        channel = channel_of(gateway)
        with pytest.raises(DeliveryRefused) as refused:
            await channel._send_text(OutboundMessage(IN_GENERAL, "hello"), "hello")
    assert type(refused.value) is refusal
    assert refused.value.reason == f"{text} ({code})"


async def test_a_person_who_closed_their_dms_is_gone(
    fake: FakeDiscord, discord_config: Any
) -> None:
    dm = f"/channels/{fake.dm_channel_id(ALICE)}/messages"
    fake.fail("POST", dm, 403, 50007, "Cannot send messages to this user")
    async with running(discord_config(), ScriptedProvider([])) as gateway:
        channel = channel_of(gateway)
        to_alice = Conversation("discord", ALICE, ConversationKind.DM)
        with pytest.raises(ConversationGone, match="Cannot send messages to this user"):
            await channel._send_text(OutboundMessage(to_alice, "a reminder"), "a reminder")


async def test_an_expired_interaction_token_rejects_edits_and_sends_go_to_the_channel(
    fake: FakeDiscord, discord_config: Any
) -> None:
    """Discord refuses the token (401 50027) although the clock says it still has time:
    its messages can no longer be edited, and the answer's next message is a channel
    message that starts with the note."""
    async with running(discord_config(), ScriptedProvider(["first part"])) as gateway:
        sent = await fake.send_slash_command("ask", {"question": "long?"})
        token = sent["token"]
        await fake.until(lambda: fake.interaction_texts(token) == ["first part"])
        await settle(gateway)
        fake.expire_token(token, after_edits=0)
        meta = {
            "interaction_id": sent["id"],
            "interaction_message_id": fake.originals[token],
            "interaction_token": token,
            "application_id": BOT_ID,
            "interaction_created": time.time(),
            "channel_id": CHANNEL_ID,
        }
        ref = SentRef(IN_GENERAL, fake.originals[token], meta)
        channel = channel_of(gateway)
        with pytest.raises(EditRejected, match="Invalid Webhook Token"):
            await channel._edit_text(ref, "first part, second part")
        calls = len(fake.calls)
        with pytest.raises(EditRejected, match="expired"):
            await channel._edit_text(ref, "first part, second part")
        assert len(fake.calls) == calls, "a token known dead is not tried again"
        rest = OutboundMessage(IN_GENERAL, "", meta=meta)
        moved = await channel._send_text(rest, ", second part")
        await channel._edit_text(moved, ", second part, third part")
    assert fake.interaction_texts(token) == ["first part"]
    assert fake.messages[moved.message_id]["content"] == "*(continued)*\n, second part, third part"
    assert fake.messages[moved.message_id]["channel_id"] == CHANNEL_ID
