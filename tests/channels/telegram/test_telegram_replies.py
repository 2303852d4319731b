"""The reply path against the fake Bot API: chunking, streaming edits, the plain-text retry,
429s, migrated chats, edits that change nothing, and attachments fetched with a cap."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bot.errors import ChannelError, EditRejected
from bot.gateway import Gateway
from bot.messages import Attachment, Conversation, ConversationKind, OutboundMessage
from bot.providers.base import ChatRequest, Finish, TextDelta
from bot.providers.testing import FunctionProvider, ScriptedProvider
from channels.telegram import TelegramChannel
from tests.channels.telegram.conftest import ALICE, GROUP, payload, settled, until
from tests.fakes.telegram import FakeTelegram
from tests.media.files import pdf

StartChannel = Callable[..., Awaitable[TelegramChannel]]
DM = Conversation("tg", str(ALICE), ConversationKind.DM)


async def test_long_reply_is_split_into_messages_that_fit(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum <dolor> & sit " * 30 for i in range(30)]
    code = "```python\n" + "\n".join(f"x_{i} = {i} < {i + 1}" for i in range(200)) + "\n```"
    answer = "\n\n".join([*paragraphs[:15], code, *paragraphs[15:]])
    async with Gateway(tg_config(stream=False), provider=ScriptedProvider([answer])) as gw:
        fake.push_private("write a lot", user_id=ALICE)
        await until(lambda: len(fake.texts(ALICE)) >= 4)
        await settled(gw)
    sends = fake.calls_of("sendMessage", chat_id=ALICE)
    assert len(sends) >= 4 and all(c.params["parse_mode"] == "HTML" for c in sends)
    shown = "\n".join(fake.texts(ALICE))
    assert " ".join(shown.split()).replace("```python", "").replace("```", "") == " ".join(
        answer.replace("```python", "").replace("```", "").split()
    )
    assert all(f"x_{i} = {i} < {i + 1}" in shown for i in range(200))


async def test_streaming_edits_one_message_at_most_once_a_second(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    sentences = [f"This is sentence number {i}." for i in range(30)]

    async def slow(request: ChatRequest) -> AsyncIterator[Any]:
        for sentence in sentences:
            await asyncio.sleep(0.1)
            yield TextDelta(sentence + " ")
        yield Finish()

    config = tg_config(chat_interval_s=1.0)
    async with Gateway(config, provider=FunctionProvider(slow)) as gw:
        fake.push_private("stream please", user_id=ALICE)
        await settled(gw)
        await until(lambda: [t.rstrip() for t in fake.texts(ALICE)] == [" ".join(sentences)])
    sends = fake.calls_of("sendMessage", chat_id=ALICE)
    edits = fake.calls_of("editMessageText", chat_id=ALICE)
    assert len(sends) == 1 and len(edits) >= 2, "one message, edited in place"
    stamps = [c.at for c in sends + edits]
    assert min(b - a for a, b in itertools.pairwise(stamps)) >= 0.95


async def test_formatting_refused_by_telegram_is_sent_again_as_plain_text(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    fake.reject_html = True
    answer = "**Bold** claim: 1 < 2 & [link](https://example.com)"
    async with Gateway(tg_config(stream=False), provider=ScriptedProvider([answer])) as gw:
        fake.push_private("format this", user_id=ALICE)
        await until(lambda: fake.texts(ALICE) == [answer])
        await settled(gw)
    first, second = fake.calls_of("sendMessage", chat_id=ALICE)
    assert first.params["parse_mode"] == "HTML"
    assert "parse_mode" not in second.params and second.params["text"] == answer
    assert second.params["link_preview_options"] == {"is_disabled": True}


async def test_a_429_pauses_every_send_for_retry_after_and_loses_nothing(
    fake: FakeTelegram, start_channel: StartChannel
) -> None:
    channel = await start_channel()
    fake.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    group = Conversation("tg", str(GROUP), ConversationKind.GROUP)
    to_alice = asyncio.create_task(channel.send(OutboundMessage(DM, "to alice")))
    await fake.wait_for("sendMessage")  # answered with the 429
    await asyncio.sleep(0.1)
    await channel.send(OutboundMessage(group, "to the group"))  # another chat waits too
    await to_alice
    rejected, *delivered = fake.calls_of("sendMessage")
    assert len(delivered) == 2
    assert all(c.at - rejected.at >= 1.0 for c in delivered)
    assert fake.texts(ALICE) == ["to alice"] and fake.texts(GROUP) == ["to the group"]


async def test_sends_follow_a_group_that_moved_to_a_supergroup(
    fake: FakeTelegram, start_channel: StartChannel, home: Any
) -> None:
    channel = await start_channel()
    old, new = -4000001, -1004000001
    fake.migrated[old] = new
    conversation = Conversation("tg", str(old), ConversationKind.GROUP)
    await channel.send(OutboundMessage(conversation, "first"))
    await channel.send(OutboundMessage(conversation, "second"))
    assert fake.texts(new) == ["first", "second"]
    assert len(fake.calls_of("sendMessage", chat_id=old)) == 1, "learned once, then remembered"
    assert channel.migrations.current(old) == new


async def test_an_edit_that_changes_nothing_is_not_an_error(
    fake: FakeTelegram, start_channel: StartChannel
) -> None:
    channel = await start_channel()
    ref = await channel.send(OutboundMessage(DM, "same **text**"))
    await channel._edit_text(ref, "same **text**")
    assert fake.calls_of("editMessageText")
    fake.messages.clear()
    with pytest.raises(EditRejected):  # deleted by the person: continued in a new message
        await channel._edit_text(ref, "the message is gone")


async def test_attachments_reach_the_model_as_names_and_are_fetched_with_a_cap(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    content = pdf("Quarterly report " + "x" * 2600)
    update = _document(fake, content)
    provider = ScriptedProvider(["Got your report."])
    async with Gateway(tg_config(), provider=provider) as gw:
        fake.push_update(update)
        await until(lambda: fake.texts(ALICE) == ["Got your report."])
        await settled(gw)
        (asked,) = provider.requests
        assert "[document report.pdf" in asked.messages[-1].content
        assert "Quarterly report" in asked.messages[-1].content  # read, as text
        channel = gw.channels["tg"]
        doc = Attachment("document", update["message"]["document"]["file_id"], "report.pdf")
        assert await channel.fetch(doc, max_bytes=1_000_000) == content  # type: ignore[attr-defined]
        with pytest.raises(ChannelError, match=r"report\.pdf is 3 KB; the limit is 1000 bytes"):
            await channel.fetch(doc, max_bytes=1000)  # type: ignore[attr-defined]
        sized = Attachment("document", doc.ref, "report.pdf", size=len(content))
        calls = len(fake.calls_of("getFile"))
        with pytest.raises(ChannelError, match="the limit is"):
            await channel.fetch(sized, max_bytes=1000)  # type: ignore[attr-defined]
        assert len(fake.calls_of("getFile")) == calls, "a known size is refused before asking"


async def test_photo_and_voice_parts_fetch_through_get_file(
    fake: FakeTelegram, start_channel: StartChannel
) -> None:
    photo, voice = payload("photo"), payload("voice")
    photo["message"]["photo"][-1].update(file_id=fake.add_file(b"\xff\xd8jpeg"), file_size=6)
    voice["message"]["voice"].update(
        file_id=fake.add_file(b"OggS" * 100, reported_size=10), file_size=10
    )
    channel = await start_channel(max_download_mb=0.0002)  # about 200 bytes
    sink = channel.sink
    fake.push_update(photo)
    fake.push_update(voice)
    await until(lambda: len(sink.messages) == 2)  # type: ignore[union-attr]
    image, note = (m.parts[0] for m in sink.messages)  # type: ignore[union-attr]
    assert await channel.fetch(image, max_bytes=10_000) == b"\xff\xd8jpeg"
    with pytest.raises(ChannelError, match="larger than"):
        await channel.fetch(note, max_bytes=10_000)  # Telegram said 10 bytes; it sends 400


async def test_malformed_updates_are_logged_and_skipped(
    fake: FakeTelegram, start_channel: StartChannel, caplog: pytest.LogCaptureFixture
) -> None:
    channel = await start_channel()
    for raw in payload("malformed"):
        if isinstance(raw, dict) and "update_id" in raw:
            fake.push_update(raw)
        else:
            fake.push_raw(raw)
    after = fake.push_private("still here", user_id=ALICE)
    sink = channel.sink
    await until(lambda: [m.text for m in sink.messages] == ["still here"])  # type: ignore[union-attr]
    await until(lambda: fake.confirmed_below() > after["update_id"] or not fake.pending)
    skipped = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(skipped) == 5
    assert len([r for r in caplog.records if "without an id" in r.getMessage()]) == 2
    assert channel.health()["running"]


async def test_a_name_and_a_file_name_with_half_an_emoji_are_answered(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    # JSON carries a lone UTF-16 surrogate as an escape; the store cannot encode one, so a
    # person whose name held it got "Something went wrong" to every message
    update = _document(fake, pdf("Quarterly report"), file_name="report \ud83d.pdf")
    update["message"]["from"]["first_name"] = "Ali\ud83d"
    provider = ScriptedProvider(["Got your report."])
    async with Gateway(tg_config(), provider=provider) as gw:
        fake.push_update(update)
        await until(lambda: fake.texts(ALICE) == ["Got your report."])
        await settled(gw)
    (asked,) = provider.requests
    assert "[document report \ufffd.pdf" in asked.messages[-1].content


def _document(fake: FakeTelegram, content: bytes, **fields: Any) -> dict[str, Any]:
    """Alice's document update, its file served by the fake."""
    update: dict[str, Any] = payload("document")
    update["message"]["document"].update(
        file_id=fake.add_file(content), file_size=len(content), **fields
    )
    return update
