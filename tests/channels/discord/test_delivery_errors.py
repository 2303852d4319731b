"""Every answer arrives whole and once, also when Discord errors: faults injected at the fake,
the answer read back from what the fake shows, through the real gateway and discord.py."""

from __future__ import annotations

from typing import Any

import pytest

from bot import delivery
from bot.providers.base import ChatRequest
from bot.providers.testing import FunctionProvider, ScriptedProvider
from channels.base import BaseChannel
from channels.discord_outbound import CONTINUED
from tests.channels.discord.conftest import full, running, settle, slow_pieces
from tests.fakes.discord import ALICE, BOB, BOT_ID, CHANNEL_ID, FakeDiscord


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # the same rules as in production, on a shorter clock
    monkeypatch.setattr(BaseChannel, "retry_backoff_s", 0.05)
    monkeypatch.setattr(delivery, "RETRY_DELAYS_S", (1.0, 0.3))


def squeeze(text: str) -> str:
    """The text without whitespace: where a message was cut does not matter, a repeated or
    a missing word does."""
    return "".join(text.split())


def channel_messages(fake: FakeDiscord, channel_id: str) -> list[str]:
    """The bot's ordinary messages in a channel (not interaction replies), oldest first."""
    return [
        m["content"]
        for m in fake.messages.values()
        if m["channel_id"] == channel_id and "_token" not in m
    ]


def echo(request: ChatRequest) -> str:
    return f"re: {request.messages[-1].content}"


async def test_a_message_that_cannot_be_edited_mid_answer_is_continued_in_a_new_one(
    fake: FakeDiscord, discord_config: Any
) -> None:
    dm = fake.dm_channel_id(ALICE)
    async with running(discord_config(), FunctionProvider(slow_pieces(24, 0.1))) as gateway:
        await fake.send_message("tell me a lot", dm=True)
        await fake.wait_for("POST", f"/channels/{dm}/messages")
        (first_id,) = fake.messages
        fake.fail("PATCH", f"/messages/{first_id}", 404, 10008, "Unknown Message")
        await fake.until(lambda: squeeze("".join(fake.texts_in(dm))) == squeeze(full(24)), 10)
        await settle(gateway)
    first, rest = fake.texts_in(dm)
    assert first.startswith("part 00") and not rest.startswith("part 00"), "nothing repeated"
    assert squeeze(first + rest) == squeeze(full(24))
    assert len(fake.calls_to("PATCH", f"/messages/{first_id}", status=404)) == 1


async def test_a_server_error_on_an_edit_is_retried_into_the_same_message(
    fake: FakeDiscord, discord_config: Any
) -> None:
    dm = fake.dm_channel_id(ALICE)
    async with running(discord_config(), FunctionProvider(slow_pieces(24, 0.1))) as gateway:
        await fake.send_message("tell me a lot", dm=True)
        await fake.wait_for("POST", f"/channels/{dm}/messages")
        fake.fail("PATCH", f"/channels/{dm}/messages/", 503, 0, "Service Unavailable")
        await fake.until(lambda: squeeze("".join(fake.texts_in(dm))) == squeeze(full(24)), 10)
        await settle(gateway)
    assert [squeeze(t) for t in fake.texts_in(dm)] == [squeeze(full(24))]
    assert fake.calls_to("PATCH", f"/channels/{dm}/messages/", status=503)


async def test_an_interaction_token_refused_mid_answer_continues_in_the_channel(
    fake: FakeDiscord, discord_config: Any
) -> None:
    """Discord answers 401 Invalid Webhook Token after a few edits: the interaction's reply
    stays as it was, and the channel message starts exactly where it stopped."""
    async with running(discord_config(), FunctionProvider(slow_pieces(30, 0.1))) as gateway:
        sent = await fake.send_slash_command("ask", {"question": "a long one"})
        token = sent["token"]
        fake.expire_token(token, after_edits=3)

        def shown() -> str:
            return "".join(fake.interaction_texts(token) + channel_messages(fake, CHANNEL_ID))

        await fake.until(lambda: squeeze(shown().replace(CONTINUED, "")) == squeeze(full(30)), 10)
        await settle(gateway)
        dm = fake.dm_channel_id(ALICE)
        await fake.send_message("still there?", dm=True)
        await fake.until(lambda: squeeze("".join(fake.texts_in(dm))) == squeeze(full(30)), 10)
        await settle(gateway)
    (reply,) = fake.interaction_texts(token)
    (moved,) = channel_messages(fake, CHANNEL_ID)
    assert reply.startswith("part 00")
    assert moved.startswith(CONTINUED), "a note says the answer goes on here"
    rest = moved.removeprefix(CONTINUED)
    assert not rest.lstrip().startswith("part 00"), "the channel does not repeat the reply"
    assert squeeze(reply + rest) == squeeze(full(30))
    assert fake.calls_to("PATCH", "/webhooks/", status=401)
    assert len(fake.texts_in(dm)) == 1, "the next message is answered as usual"


async def test_a_channel_that_refuses_every_send_ends_the_delivery_with_its_reason(
    fake: FakeDiscord, discord_config: Any
) -> None:
    fake.fail("POST", f"/channels/{CHANNEL_ID}/messages", 403, 50001, "Missing Access", times=None)
    provider = FunctionProvider(echo)
    config = discord_config()
    config.gateway.owners = [f"discord:{BOB}"]
    async with running(config, provider) as gateway:
        asked = await fake.send_message("anyone?", mention=True)
        await fake.wait_for("POST", f"/channels/{fake.dm_channel_id(BOB)}/messages")
        await settle(gateway)
        await fake.send_message("and here?", dm=True)
        await fake.wait_for("POST", f"/channels/{fake.dm_channel_id(ALICE)}/messages")
        await settle(gateway)
        found = await gateway.store.deliveries.get(("discord", asked["id"]))
    refused = fake.calls_to("POST", f"/channels/{CHANNEL_ID}/messages", status=403)
    assert len(refused) == 1, "a refusal is not retried"
    assert found is not None
    status, reason, _state = found
    assert (status, reason) == ("failed", "Missing Access (50001)")
    (notice,) = fake.texts_in(fake.dm_channel_id(BOB))
    assert "Missing Access (50001)" in notice
    assert [r.messages[-1].content for r in provider.requests] == ["anyone?", "and here?"]
    assert fake.texts_in(fake.dm_channel_id(ALICE)) == ["re: and here?"]


async def test_an_answer_cut_by_failing_sends_is_finished_after_a_restart_once(
    fake: FakeDiscord, discord_config: Any
) -> None:
    """Discord answers 503 to every send after the first: the answer is kept, and after a
    restart the rest follows the part already shown, without asking the model again."""
    answer = "\n\n".join(f"Part {i}. " + "lorem ipsum dolor sit amet " * 60 for i in range(4))
    provider = ScriptedProvider([answer])
    dm = fake.dm_channel_id(ALICE)
    fake.fail("POST", f"/channels/{dm}/messages", 503, 0, "Service Unavailable", times=3, after=1)
    config = discord_config(stream=False)
    async with running(config, provider) as gateway:
        asked = await fake.send_message("write a lot", dm=True)
        await fake.until(lambda: len(fake.calls_to("POST", dm, status=503)) == 3)
        await settle(gateway)
        found = await gateway.store.deliveries.get(("discord", asked["id"]))
    assert found is not None
    status, _reason, state = found
    assert status == "pending" and state.final and 0 < state.shown < len(answer)
    assert len(fake.texts_in(dm)) == 1

    async with running(config, ScriptedProvider([])) as gateway:
        await fake.until(lambda: squeeze("".join(fake.texts_in(dm))) == squeeze(answer), 10)
        await settle(gateway)
        found = await gateway.store.deliveries.get(("discord", asked["id"]))
    assert found is not None and found[0] == "done"
    assert " ".join(fake.texts_in(dm)).split() == answer.split(), "the rest, once, in order"
    assert len(provider.requests) == 1


async def test_a_slash_command_cut_by_a_restart_is_not_answered_twice(
    fake: FakeDiscord, discord_config: Any
) -> None:
    """The process stops while the model is still writing a slash command's answer: after
    the restart the interaction gets a note, the part shown stays, and nothing is repeated
    or asked of the model again."""
    provider = FunctionProvider(slow_pieces(40, 0.1))
    config = discord_config()
    config.gateway.shutdown_grace_s = 0.1
    async with running(config, provider):
        sent = await fake.send_slash_command("ask", {"question": "a long one"})
        token = sent["token"]
        await fake.wait_for("PATCH", f"/webhooks/{BOT_ID}/{token}/messages/", count=2)
    (cut,) = fake.interaction_texts(token)
    assert cut.startswith("part 00") and squeeze(cut) != squeeze(full(40))

    async with running(config, ScriptedProvider([])) as gateway:
        await fake.until(lambda: len(fake.interaction_texts(token)) == 2)
        await settle(gateway)
    assert fake.interaction_texts(token) == [cut, delivery.INTERRUPTED_NOTE]
    assert len(provider.requests) == 1, "the model is not asked again"
    assert not channel_messages(fake, CHANNEL_ID), "nothing went to the channel"
