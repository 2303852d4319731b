"""When Telegram errors on an answer already on its way: edits that fail are retried or the
answer goes on in a new message, a refusal ends the delivery once with a notice to the
owner, a send that keeps failing is tried again later (three tries across restarts), and a
restart never posts an answer twice. Faults are injected at the fake Bot API; what the
person sees is read back from the fake's record of messages."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bot import delivery
from bot.errors import ChannelError, ConversationGone, DeliveryRefused, EditRejected
from bot.gateway import Gateway
from bot.messages import Conversation, ConversationKind, OutboundMessage
from bot.providers.base import ChatRequest, Finish, TextDelta
from bot.providers.testing import FunctionProvider, ScriptedProvider
from channels.base import BaseChannel
from channels.chunks import split_text
from channels.telegram import TelegramChannel
from tests.channels.telegram.conftest import ALICE, GROUP, settled, until
from tests.fakes.telegram import FakeTelegram

BOB = 43
SENTENCES = [f"This is sentence number {i}." for i in range(16)]
ANSWER = " ".join(SENTENCES)


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # the same rules as in production, on a shorter clock
    monkeypatch.setattr(BaseChannel, "retry_backoff_s", 0.05)
    monkeypatch.setattr(delivery, "RETRY_DELAYS_S", (1.0, 0.3))


def _streaming(requests: list[ChatRequest]) -> FunctionProvider:
    async def slowly(request: ChatRequest) -> AsyncIterator[Any]:
        requests.append(request)
        for sentence in SENTENCES:
            await asyncio.sleep(0.12)
            yield TextDelta(sentence + " ")
        yield Finish()

    return FunctionProvider(slowly)


def _words(texts: list[str]) -> list[str]:
    return " ".join(texts).split()


async def _state(gw: Gateway, update: dict[str, Any]) -> tuple[str, str | None, Any]:
    found = await gw.store.deliveries.get(("tg", str(update["update_id"])))
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("status", "description", "tries"),
    [(502, "Bad Gateway", 3), (400, "Bad Request: message can't be edited", 1)],
    ids=["edits-keep-failing", "edit-rejected"],
)
async def test_a_message_that_cannot_be_edited_is_continued_in_a_new_one(
    fake: FakeTelegram, tg_config: Callable[..., Any], status: int, description: str, tries: int
) -> None:
    requests: list[ChatRequest] = []
    fake.fail_next("editMessageText", status, description, count=tries)
    config = tg_config()
    async with Gateway(config, provider=_streaming(requests)) as gw:
        update = fake.push_private("tell me a story", user_id=ALICE)
        await until(lambda: _words(fake.texts(ALICE)) == ANSWER.split(), timeout=15)
        await settled(gw)
        status_now, _error, state = await _state(gw, update)
        session = gw.sessions.get(f"tg:dm:{ALICE}")
        rows = await gw.store.turns.for_session(session.row.id)  # type: ignore[union-attr]
    assert len(fake.calls_of("sendMessage", chat_id=ALICE)) >= 2, "went on in a new message"
    on_first = fake.calls_of("editMessageText", message_id=fake.sent_order[0][1])
    assert [c.status for c in on_first] == [status] * tries, "tried, then never edited again"
    assert status_now == "done" and state.shown >= len(ANSWER) and len(state.refs) >= 2
    assert [r["outcome"] for r in rows if r["role"] == "assistant"] == ["ok"]

    shown_before = list(fake.texts(ALICE))
    sends_before = len(fake.calls_of("sendMessage"))
    async with Gateway(config, provider=ScriptedProvider(["Still here."])) as gw:
        fake.push_private("thanks", user_id=ALICE)
        await until(lambda: fake.texts(ALICE)[-1:] == ["Still here."])
        await settled(gw)
    assert fake.texts(ALICE) == [*shown_before, "Still here."], "nothing posted twice"
    assert len(fake.calls_of("sendMessage")) == sends_before + 1
    assert len(requests) == 1


async def test_a_streaming_edit_that_fails_twice_is_retried_in_place(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    requests: list[ChatRequest] = []
    fake.fail_next("editMessageText", 502, "Bad Gateway", count=2)
    async with Gateway(tg_config(), provider=_streaming(requests)) as gw:
        update = fake.push_private("tell me a story", user_id=ALICE)
        await until(lambda: [t.rstrip() for t in fake.texts(ALICE)] == [ANSWER], timeout=15)
        await settled(gw)
        assert (await _state(gw, update))[0] == "done"
    edits = [c.status for c in fake.calls_of("editMessageText")]
    assert edits[:3] == [502, 502, 200] and len(fake.calls_of("sendMessage")) == 1


async def test_a_deleted_forum_topic_ends_the_delivery_once_and_tells_the_owner(
    fake: FakeTelegram, tg_config: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    requests: list[ChatRequest] = []

    def answer(request: ChatRequest) -> str:
        requests.append(request)
        return f"Answer {len(requests)}."

    fake.refuse(GROUP, 400, "Bad Request: message thread not found", thread_id=77)
    config = tg_config(access={"groups": {str(GROUP): {"require_mention": False}}})
    async with Gateway(config, provider=FunctionProvider(answer)) as gw:
        update = fake.push_group("plan the trip", chat_id=GROUP, thread_id=77)
        await until(lambda: len(fake.texts(ALICE)) == 1)
        await settled(gw)
        status, error, _state_now = await _state(gw, update)
        fake.push_group("and the budget?", chat_id=GROUP, thread_id=88)
        await until(lambda: fake.texts(GROUP) == ["Answer 2."])
        await settled(gw)
    assert status == "failed" and error == "message thread not found"
    (notice,) = fake.texts(ALICE)
    assert "message thread not found" in notice and str(GROUP) in notice
    refused = fake.calls_of("sendMessage", chat_id=GROUP, message_thread_id=77)
    assert [c.status for c in refused] == [400], "a refusal is not retried"
    assert not [r for r in caplog.records if r.exc_info], "no traceback"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([r for r in warnings if "gave up: message thread not found" in r.getMessage()]) == 1

    async with Gateway(config, provider=FunctionProvider(answer)) as gw:
        await asyncio.sleep(0.5)
        await settled(gw)
    assert len(requests) == 2, "a failed delivery costs no further model call"
    assert len(fake.calls_of("sendMessage", chat_id=GROUP, message_thread_id=77)) == 1
    assert len(fake.texts(ALICE)) == 1, "one notice"


async def test_a_send_that_keeps_failing_is_tried_three_times_across_a_restart(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    provider = ScriptedProvider(["Hello Bob.", "Hello again, Bob."])
    fake.refuse(BOB, 502, "Bad Gateway", methods=("sendMessage",))
    config = tg_config(stream=False, access={"dm_policy": "open"})  # one send per try
    async with Gateway(config, provider=provider) as gw:
        update = fake.push_private("hi", user_id=BOB, first_name="Bob")
        await until(lambda: len(fake.calls_of("sendMessage", chat_id=BOB)) == 3)
        await settled(gw)
        status, error, state = await _state(gw, update)
    assert status == "pending" and state.attempts == 1 and state.final
    assert state.answer == "Hello Bob." and error is not None and "Bad Gateway" in error

    async with Gateway(config, provider=provider) as gw:  # the second and third try
        await until(lambda: len(fake.texts(ALICE)) == 1, timeout=10)
        await settled(gw)
        status, error, state = await _state(gw, update)
        assert status == "failed" and state.attempts == 3 and state.answer == ""
        assert len(fake.calls_of("sendMessage", chat_id=BOB)) == 9, "three tries of three"
        assert "Bad Gateway" in fake.texts(ALICE)[0]
        fake.allow(BOB)
        fake.push_private("are you back?", user_id=BOB, first_name="Bob")
        await until(lambda: fake.texts(BOB) == ["Hello again, Bob."])
        await settled(gw)
    assert len(provider.requests) == 2, "the failed delivery was never answered again"


async def test_an_answer_cut_by_failing_sends_is_finished_after_a_restart_from_where_it_stopped(
    fake: FakeTelegram, tg_config: Callable[..., Any]
) -> None:
    answer = "\n\n".join(f"Part {i}. " + "lorem ipsum dolor sit amet " * 40 for i in range(6))
    provider = ScriptedProvider([answer])
    fake.fail_next("sendMessage", 502, "Bad Gateway", count=3, after=1)
    config = tg_config(stream=False)
    async with Gateway(config, provider=provider) as gw:
        update = fake.push_private("write a lot", user_id=ALICE)
        await until(lambda: len(fake.calls_of("sendMessage")) == 4)
        await settled(gw)
        status, _error, state = await _state(gw, update)
    assert status == "pending" and state.final and 0 < state.shown < len(answer)
    assert len(fake.texts(ALICE)) == 1

    async with Gateway(config, provider=ScriptedProvider([])) as gw:
        await until(lambda: len(fake.texts(ALICE)) == 2, timeout=10)
        await settled(gw)
        status, _error, state = await _state(gw, update)
    assert status == "done" and state.shown >= len(answer.rstrip())
    assert _words(fake.texts(ALICE)) == answer.split(), "the rest, once, in order"
    assert len(provider.requests) == 1


@pytest.mark.parametrize(
    ("method", "status", "description", "raised"),
    [
        ("sendMessage", 400, "Bad Request: message thread not found", DeliveryRefused),
        ("sendMessage", 400, "Bad Request: chat not found", ConversationGone),
        ("sendMessage", 403, "Forbidden: bot was blocked by the user", ConversationGone),
        ("sendMessage", 403, "Forbidden: bot was kicked from the group chat", ConversationGone),
        ("sendMessage", 502, "Bad Gateway", ChannelError),
        ("sendMessage", 500, "Internal Server Error", ChannelError),
        ("editMessageText", 400, "Bad Request: message to edit not found", EditRejected),
        ("editMessageText", 400, "Bad Request: message can't be edited", EditRejected),
    ],
)
async def test_telegrams_errors_are_classified(
    fake: FakeTelegram,
    start_channel: Callable[..., Awaitable[TelegramChannel]],
    method: str,
    status: int,
    description: str,
    raised: type[ChannelError],
) -> None:
    channel = await start_channel()
    dm = Conversation("tg", str(ALICE), ConversationKind.DM)
    ref = await channel.send(OutboundMessage(dm, "first"))
    fake.fail_next(method, status, description)
    with pytest.raises(ChannelError) as caught:
        if method == "sendMessage":
            await channel._send_text(OutboundMessage(dm, "second"), "second")
        else:
            await channel._edit_text(ref, "first, edited")
    assert type(caught.value) is raised
    if isinstance(caught.value, DeliveryRefused):
        assert caught.value.reason in description.lower()


async def test_chunks_resplit_for_telegrams_html_still_name_their_span_of_the_answer(
    start_channel: Callable[..., Awaitable[TelegramChannel]],
) -> None:
    # escapes make the HTML of this text far longer than the text: chunks are split again
    text = "\n\n".join(f"Step {i}: compare a<b & c>d, then `x<y`." for i in range(400))
    channel = await start_channel()
    chunks = channel.split(text)
    assert len(chunks) > len(split_text(text, channel.max_message_len))
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for before, after in itertools.pairwise(chunks):
        assert before.end <= after.start and not text[before.end : after.start].strip()
    for chunk in chunks:
        assert text[chunk.start : chunk.end].rstrip() == chunk.text[chunk.lead :].rstrip()


async def _one_message_of_paragraphs(
    start_channel: Callable[..., Awaitable[TelegramChannel]],
) -> tuple[TelegramChannel, Conversation, str]:
    """A channel, a DM, and a text its split sends as one message, in paragraphs."""
    channel = await start_channel()
    dm = Conversation("tg", str(ALICE), ConversationKind.DM)
    text = "\n\n".join(f"Paragraph {i}: " + "the markets moved a little. " * 10 for i in range(10))
    assert len(channel.split(text)) == 1
    return channel, dm, text


async def test_a_text_telegram_finds_too_long_goes_in_smaller_pieces_never_retried_as_it_was(
    fake: FakeTelegram, start_channel: Callable[..., Awaitable[TelegramChannel]]
) -> None:
    # Telegram counts a text after its own parsing; where it counts more than the channel's
    # split did, the same text can never go, and three tries of it would lose the answer
    channel, dm, text = await _one_message_of_paragraphs(start_channel)
    fake.fail_next("sendMessage", 400, "Bad Request: message is too long", count=2)
    await channel.send(OutboundMessage(dm, text))
    tried = [call.params["text"] for call in fake.calls_of("sendMessage", chat_id=ALICE)]
    assert len(tried) > 3 and len(set(tried)) == len(tried), "no text was sent twice"
    assert _words(fake.texts(ALICE)) == text.split(), "the whole answer, in order"

    fake.fail_next("editMessageText", 400, "Bad Request: message is too long")
    ref = await channel.send(OutboundMessage(dm, "short"))
    with pytest.raises(EditRejected):  # the answer goes on in a new message
        await channel._edit_text(ref, "short, edited")

    fake.refuse(ALICE, 400, "Bad Request: message is too long")
    with pytest.raises(DeliveryRefused):  # nothing smaller left to try: a clear refusal
        await channel.send(OutboundMessage(dm, "a short text"))


async def test_a_piece_of_a_text_too_long_is_retried_alone_and_a_failure_says_what_was_shown(
    fake: FakeTelegram, start_channel: Callable[..., Awaitable[TelegramChannel]]
) -> None:
    # a later piece throttled once goes again alone: the pieces before it are not repeated
    channel, dm, text = await _one_message_of_paragraphs(start_channel)
    fake.fail_next("sendMessage", 400, "Bad Request: message is too long")
    # Telegram says whole seconds; the channel takes any duration, and waits it out for real
    throttled = "Too Many Requests: retry after 0.05"
    fake.fail_next("sendMessage", 429, throttled, after=1, retry_after=0.05)
    await channel.send(OutboundMessage(dm, text))
    shown = fake.texts(ALICE)
    assert len(shown) > 1 and len(set(shown)) == len(shown), "each piece was shown once"
    assert _words(shown) == text.split()
    assert [c.status for c in fake.calls_of("sendMessage")].count(429) == 1

    # a later piece that keeps failing: the error says how far the text got, and the rest
    # is exactly what the person has not seen
    before = len(shown)
    fake.fail_next("sendMessage", 400, "Bad Request: message is too long")
    fake.fail_next("sendMessage", 500, "Internal Server Error", after=1, count=10)
    with pytest.raises(ChannelError) as failed:
        await channel.send(OutboundMessage(dm, text))
    fake.faults.clear()
    shown_now = fake.texts(ALICE)[before:]
    assert len(shown_now) == 1 and 0 < failed.value.delivered < len(text)
    assert _words(shown_now) == text[: failed.value.delivered].split()
    await channel.send(OutboundMessage(dm, failed.value.unsent(text)))
    assert _words(fake.texts(ALICE)[before:]) == text.split(), "the rest, nothing twice"


async def test_a_streamed_chunk_partly_shown_goes_on_from_its_first_unshown_piece(
    fake: FakeTelegram, start_channel: Callable[..., Awaitable[TelegramChannel]]
) -> None:
    # while the answer streams, its message is called too long and goes in pieces, and a
    # later piece keeps failing: the final flush sends only what no piece showed
    channel, dm, text = await _one_message_of_paragraphs(start_channel)
    ending = "\n\nAnd that is all for today."

    async def deltas() -> AsyncIterator[str]:
        yield text
        # the rest comes once streaming has given up on that piece
        await until(lambda: [c.status for c in fake.calls_of("sendMessage")].count(500) == 3)
        yield ending

    fake.fail_next("sendMessage", 400, "Bad Request: message is too long")
    fake.fail_next("sendMessage", 500, "Internal Server Error", after=1, count=3)
    await channel.reply(OutboundMessage(dm, ""), deltas())
    shown = fake.texts(ALICE)
    assert len(shown) > 1 and len(set(shown)) == len(shown), "no piece was shown twice"
    assert _words(shown) == (text + ending).split()


async def test_a_streamed_answer_that_fails_in_a_later_chunk_says_what_of_it_was_shown(
    fake: FakeTelegram, start_channel: Callable[..., Awaitable[TelegramChannel]]
) -> None:
    # the answer's second message goes in pieces, and one keeps failing: the error counts
    # what the person saw of the whole answer, as `send`'s does of its text
    channel, dm, paragraphs = await _one_message_of_paragraphs(start_channel)
    text = paragraphs + "\n\n" + paragraphs.replace("Paragraph", "Section")
    assert len(channel.split(text)) == 2

    async def deltas() -> AsyncIterator[str]:
        yield text

    fake.fail_next("sendMessage", 400, "Bad Request: message is too long", after=1)
    fake.fail_next("sendMessage", 500, "Internal Server Error", after=1, count=10)
    with pytest.raises(ChannelError) as failed:
        await channel.reply(OutboundMessage(dm, ""), deltas())
    fake.faults.clear()
    shown = fake.texts(ALICE)
    assert len(shown) == 2 and len(paragraphs) < failed.value.delivered < len(text)
    assert _words(shown) == text[: failed.value.delivered].split()
    await channel.send(OutboundMessage(dm, failed.value.unsent(text)))
    assert _words(fake.texts(ALICE)) == text.split(), "the rest, nothing twice"


async def test_a_piece_too_long_to_cut_further_is_refused_saying_what_was_shown(
    fake: FakeTelegram, start_channel: Callable[..., Awaitable[TelegramChannel]]
) -> None:
    # the first piece goes; the second is called too long at every size down to the
    # channel's smallest piece: the refusal says how far the text got, like any failure
    channel, dm, text = await _one_message_of_paragraphs(start_channel)
    fake.fail_next("sendMessage", 400, "Bad Request: message is too long")
    fake.fail_next("sendMessage", 400, "Bad Request: message is too long", after=1, count=10)
    with pytest.raises(DeliveryRefused, match="too long") as refused:
        await channel.send(OutboundMessage(dm, text))
    fake.faults.clear()
    shown = fake.texts(ALICE)
    assert len(shown) == 1 and 0 < refused.value.delivered < len(text)
    assert _words(shown) == text[: refused.value.delivered].split()
    tried = [c.params["text"] for c in fake.calls_of("sendMessage", chat_id=ALICE)]
    assert min(map(len, tried)) >= channel.smallest_piece, "never cut below the floor"
    await channel.send(OutboundMessage(dm, refused.value.unsent(text)))
    assert _words(fake.texts(ALICE)) == text.split(), "the rest, nothing twice"
