"""The shared send path when the platform errors: a message that can no longer be edited is
continued in new ones without repeating what it shows, transient failures are retried, a
refusal stops the answer, and a restart never asks the model again for an answer that was
partly shown."""

from __future__ import annotations

import asyncio
import io
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from bot.delivery import INTERRUPTED_NOTE
from bot.errors import ChannelError, ConfigError, DeliveryRefused, EditRejected, IdentityRefused
from bot.gateway import Gateway
from bot.messages import Conversation, ConversationKind, OutboundMessage, SentRef
from bot.providers.base import ChatRequest, Finish, TextDelta
from bot.providers.testing import FunctionProvider, ScriptedProvider
from channels.base import BaseChannel
from channels.chunks import split_text
from channels.console import ConsoleChannel
from channels.oneshot import OneShotChannel
from channels.web import WebChannel
from tests.fakes.channel import RecordingChannel

CHAT = Conversation("flaky", "c1", ConversationKind.DM)
WORDS = [f"word{i:03d}" for i in range(120)]
ANSWER = " ".join(WORDS)


class Flaky(BaseChannel):
    """A platform in a test: edits of the ids in `rejecting` are refused for good, the next
    `failing_edits` edits and `failing_sends` sends fail transiently, sends to a refused
    chat are refused."""

    type = "flaky"
    supports_edit = True
    edit_interval = 0.02
    typing_interval = 10.0
    max_message_len = 300
    retry_backoff_s = 0.01

    def __init__(self) -> None:
        super().__init__("flaky")
        self.messages: dict[str, str] = {}
        self.edits: list[str] = []
        self.rejecting: set[str] = set()
        self.failing_edits = 0
        self.failing_sends = 0
        self.refusing = False
        self.sends = 0  # tries, failed ones included
        self._ids = itertools.count(1)

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        self.sends += 1
        if self.refusing:
            raise DeliveryRefused("message thread not found")
        if self.failing_sends:
            self.failing_sends -= 1
            raise ChannelError("HTTP 502")
        mid = str(next(self._ids))
        self.messages[mid] = text
        return SentRef(message.conversation, mid)

    async def _edit_text(self, ref: SentRef, text: str) -> None:
        self.edits.append(ref.message_id)
        if ref.message_id in self.rejecting:
            raise EditRejected("message can't be edited")
        if self.failing_edits:
            self.failing_edits -= 1
            raise ChannelError("HTTP 500")
        self.messages[ref.message_id] = text

    def texts(self) -> list[str]:
        return list(self.messages.values())


class Progress:
    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []  # (messages, characters shown)

    async def shown(self, refs: Sequence[SentRef], upto: int) -> None:
        self.seen.append((len(refs), upto))


async def _words(
    pulled: list[str], pause: float = 0.002, *, sent: Flaky | None = None
) -> AsyncIterator[str]:
    """The answer word by word. With `sent`, the rest waits after the first words until the
    channel has tried to send a message, so that the answer certainly grows after a send
    (and is edited), however late a loaded machine runs the first streaming flush."""
    for i, word in enumerate(WORDS):
        if i == 5 and sent is not None:
            while not sent.sends:
                await asyncio.sleep(0.005)
        await asyncio.sleep(pause)
        pulled.append(word)
        yield word if i == 0 else " " + word


async def test_a_message_that_cannot_be_edited_is_continued_without_repeating_it() -> None:
    channel = Flaky()
    progress = Progress()
    pulled: list[str] = []

    async def reject_the_first_message() -> None:
        while not channel.messages:
            await asyncio.sleep(0.001)
        channel.rejecting.add("1")

    rejecting = asyncio.create_task(reject_the_first_message())
    refs = await channel.reply(
        OutboundMessage(CHAT, ""), _words(pulled, 0.01, sent=channel), progress
    )
    await rejecting
    texts = channel.texts()
    assert len(texts) >= 2 and len(refs) == len(texts)
    assert " ".join(texts).split() == WORDS, "every word once, in order"
    assert channel.edits.count("1") == 1, "a refused message is never edited again"
    assert progress.seen[-1] == (len(refs), len(ANSWER))
    shown = [upto for _, upto in progress.seen]
    assert shown == sorted(shown)


async def test_transient_edit_failures_are_retried_in_place() -> None:
    channel = Flaky()
    channel.failing_edits = 2  # fewer than max_transient_attempts
    refs = await channel.reply(OutboundMessage(CHAT, ""), _words([], 0.01, sent=channel))
    assert channel.failing_edits == 0, "both failures happened"
    assert " ".join(channel.texts()).split() == WORDS
    assert len(refs) == len(split_text(ANSWER, channel.max_message_len)), "no message added"


async def test_an_edit_that_keeps_failing_is_continued_in_a_new_message() -> None:
    channel = Flaky()
    channel.failing_edits = channel.max_transient_attempts
    refs = await channel.reply(OutboundMessage(CHAT, ""), _words([], 0.01, sent=channel))
    failed = channel.edits[0]
    assert channel.edits.count(failed) == channel.max_transient_attempts, "then left alone"
    assert refs[-1].message_id != failed
    assert " ".join(channel.texts()).split() == WORDS


async def test_a_refusal_stops_reading_the_answer() -> None:
    channel = Flaky()
    channel.refusing = True
    pulled: list[str] = []
    with pytest.raises(DeliveryRefused):
        await channel.reply(OutboundMessage(CHAT, ""), _words(pulled, 0.01, sent=channel))
    assert 0 < len(pulled) < len(WORDS), "the model's stream was left at the refusal"
    assert channel.messages == {}


async def test_a_send_that_keeps_failing_is_raised_after_the_whole_answer() -> None:
    channel = Flaky()
    progress = Progress()
    channel.failing_sends = 100
    pulled: list[str] = []
    started = time.monotonic()
    with pytest.raises(ChannelError) as caught:
        await channel.reply(OutboundMessage(CHAT, ""), _words(pulled), progress)
    assert not isinstance(caught.value, DeliveryRefused)
    assert pulled == WORDS, "the whole answer was read, so it can be kept"
    assert progress.seen == [] and channel.messages == {}
    assert time.monotonic() - started < 30


async def test_the_console_reports_what_it_printed() -> None:
    out = io.StringIO()
    console = ConsoleChannel("console", stdin=io.StringIO(""), stdout=out, user="owner")
    progress = Progress()

    async def parts() -> AsyncIterator[str]:
        yield "Hello"
        yield ", world"

    refs = await console.reply(OutboundMessage(console.conversation, ""), parts(), progress)
    assert out.getvalue() == "bot> Hello, world\n"
    assert progress.seen == [(1, 5), (1, 12)] and len(refs) == 1


async def test_the_web_chat_reports_what_it_published() -> None:
    web = WebChannel()
    queue, _replay = web.attach("u1", None, {})
    progress = Progress()

    async def parts() -> AsyncIterator[str]:
        yield "Hello"
        yield ""
        yield ", world"

    chat = Conversation("web", "u1", ConversationKind.DM)
    refs = await web.reply(OutboundMessage(chat, "", reply_to="c1"), parts(), progress)
    assert progress.seen == [(1, 5), (1, 12)] and [r.message_id for r in refs] == ["c1"]
    events = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [(e["type"], e["at"]) for e in events] == [("delta", 0), ("delta", 5), ("done", 12)]


def test_chunk_spans_cover_the_text_in_order() -> None:
    text = "intro\n\n```python\n" + "\n".join(f"x = {i}" for i in range(80)) + "\n```\ntail"
    chunks = split_text(text, 120)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for before, after in itertools.pairwise(chunks):
        assert before.end <= after.start and not text[before.end : after.start].strip()
    for chunk in chunks:
        shown = chunk.text[chunk.lead :].removesuffix("\n```")
        assert text[chunk.start : chunk.end].startswith(shown.rstrip()), chunk


async def test_a_restart_never_asks_the_model_again_for_a_partly_shown_answer(
    make_config: Any,
) -> None:
    async def slowly(request: ChatRequest) -> AsyncIterator[Any]:
        for i, word in enumerate(WORDS):
            await asyncio.sleep(0.02)
            yield TextDelta(word if i == 0 else " " + word)
        yield Finish()

    config = make_config(gateway={"shutdown_grace_s": 0.1})
    first = RecordingChannel(console=True)
    async with Gateway(config, provider=FunctionProvider(slowly), channels={"test": first}) as gw:
        message = await first.push("tell me a long story")
        await first.wait_for_messages(1)
        await _until(lambda: len(first.texts()[0].split()) >= 3)
    partial = first.texts()
    assert len(partial) == 1 and partial[0].split() != WORDS  # stopped while streaming

    second = RecordingChannel(console=True)
    never = ScriptedProvider(["I am here."])
    async with Gateway(config, provider=never, channels={"test": second}) as gw:
        await second.wait_for_messages(1)
        await _until(lambda: gw.sessions.active == 0 and not gw.sessions.queue_depth)
        status, _error, state = await gw.store.deliveries.get(("test", message.id))  # type: ignore[misc]
        session = gw.sessions.get("test:dm:u1")
        await gw.sessions.load(session)
        rows = await gw.store.turns.for_session(session.row.id)  # type: ignore[union-attr]
        await second.push("are you there?", delivery_id="after-the-restart")
        await second.wait_for_messages(2)
    assert never.requests[0].messages[-1].content == "are you there?"
    assert len(never.requests) == 1, "the interrupted answer was not asked for again"
    assert second.texts() == [INTERRUPTED_NOTE, "I am here."]
    assert status == "done" and state.answer == "" and state.shown > 0
    assert [(r["role"], r["outcome"]) for r in rows] == [
        ("user", None),
        ("assistant", "interrupted"),
    ]
    assert partial[0].startswith(rows[1]["content"]) and rows[1]["content"]


async def _until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


class Unreachable(RecordingChannel):
    """Every send to the chats in `down` fails transiently."""

    retry_backoff_s = 0.01

    def __init__(self, *down: str) -> None:
        super().__init__(console=True)
        self.down = set(down)
        self.tries = 0

    async def _send_text(self, message: OutboundMessage, text: str) -> SentRef:
        if message.conversation.chat_id in self.down:
            self.tries += 1
            raise ChannelError("HTTP 503")
        return await super()._send_text(message, text)


async def test_a_commands_reply_that_cannot_be_sent_is_given_up_not_run_again(
    make_config: Any,
) -> None:
    config = make_config(gateway={"owners": ["test:boss"]})
    first = Unreachable("u1")
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": first}) as gw:
        message = await first.push("/status")
        [notice] = await first.wait_for_messages(1, chat_id="boss")
        await _until(lambda: gw.sessions.active == 0)
        status, error, _state = await gw.store.deliveries.get(("test", message.id))  # type: ignore[misc]
    assert status == "failed" and error is not None and "HTTP 503" in error
    assert first.tries == BaseChannel.max_transient_attempts
    assert "test:u1" in notice and "HTTP 503" in notice

    second = RecordingChannel(console=True)
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": second}):
        await asyncio.sleep(0.3)
    assert second.texts() == [], "not sent again, the command not run again"


async def test_a_user_name_that_reads_as_a_group_is_answered_once_not_replayed(
    make_config: Any,
) -> None:
    config = make_config(gateway={"owners": ["test:boss"]})
    name = "bob@test:group:g1"
    first = RecordingChannel(console=True)
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": first}) as gw:
        message = await first.push("hello", user=name)
        [notice] = await first.wait_for_messages(1, chat_id="boss")
        again = await first.push("hello again", user=name)  # the owner is not told twice
        await _until(lambda: len(first.texts(name)) == 2)
        await _until(lambda: gw.sessions.active == 0)
        for each in (message, again):
            status, error, _state = await gw.store.deliveries.get(("test", each.id))  # type: ignore[misc]
            assert status == "failed" and error is not None and "marks a group" in error
    assert first.texts(name) == [IdentityRefused.user_message] * 2
    assert first.texts("boss") == [notice] and "marks a group" in notice

    second = RecordingChannel(console=True)
    async with Gateway(config, provider=ScriptedProvider([]), channels={"test": second}) as gw:
        # the start has replayed what was unfinished before it returned
        assert ("test", message.id) not in gw.resumed_at_start, "not run again at the next start"
        await _until(lambda: gw.sessions.active == 0)
    assert second.texts(name) == [] and second.texts("boss") == []


def test_a_terminal_user_name_that_reads_as_a_group_is_refused_at_start() -> None:
    for make in (ConsoleChannel, OneShotChannel):
        with pytest.raises(ConfigError, match=r"bob@test:channel:c.*\$USER"):
            make(user="bob@test:channel:c")
    assert OneShotChannel(user="bob@corp").user == "bob@corp"


async def test_a_send_failing_while_the_stop_drains_its_turn_waits_for_the_next_start(
    make_config: Any,
) -> None:
    """The stop lets a running turn finish; its answer cannot be sent: the next try is
    stored for the next start, and no try is left waiting in the stopped gateway."""
    release = asyncio.Event()

    async def answer(request: ChatRequest) -> str:
        await release.wait()
        return "an answer nobody gets today"

    channel = Unreachable("u1")
    gw = Gateway(make_config(), provider=FunctionProvider(answer), channels={"test": channel})
    async with gw:
        message = await channel.push("hello")
        await _until(lambda: gw.sessions.active == 1)
        stopping = asyncio.create_task(gw.stop())
        # the stop runs its drain, which waits for the turn
        await _until(lambda: gw.sessions.stopping, timeout=30)
        release.set()
        async with asyncio.timeout(10):
            await stopping
        # tried at least once in full (on a busy machine the stream's first flush may try
        # too, before the final one tries again with the whole answer)
        attempts = BaseChannel.max_transient_attempts
        assert attempts <= channel.tries <= 2 * attempts, "the answer was tried, once"
        assert gw.deliveries.tries_waiting == 0
    async with Gateway(
        make_config(),
        provider=FunctionProvider(answer),
        channels={"test": RecordingChannel(console=True)},
    ) as again:
        [open_one] = await again.store.deliveries.unfinished()
        assert open_one.message.id == message.id and open_one.state.attempts == 1
