"""A slow stream is shown as it becomes safe: the stream redactor releases its held-back text
on `release()`, `release_on_time` calls it when the source goes quiet, and a turn's answer
reaches the channel before the model has finished it.

Every test here orders events instead of timing them: the source waits for the release (with
a generous timeout) before it goes on, and the test checks which came first.
"""

from __future__ import annotations

import asyncio
import random
import string
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.providers.base import ChatRequest, TextDelta
from bot.providers.testing import FunctionProvider
from bot.security.redact import (
    STREAM_BATCH,
    Redactor,
    Released,
    SecretRegistry,
    release_on_time,
)
from tests.fakes.channel import RecordingChannel

GENEROUS = 10.0


def test_release_judges_held_text_before_the_batch_is_full() -> None:
    stream = Redactor().stream()
    assert stream.feed("Sure, here it is. ") == ""  # shorter than the batch
    assert stream.waiting
    assert stream.release() == "Sure, here it is. "
    assert not stream.waiting and stream.release() == ""
    assert stream.feed("The rest") == ""
    assert stream.flush() == "The rest"
    assert stream.release() == ""  # closed: nothing more, and no error


def test_release_still_holds_what_could_become_a_secret() -> None:
    secret = "".join(random.Random(1).choice(string.ascii_letters) for _ in range(24))
    registry = SecretRegistry()
    registry.add(secret)
    stream = Redactor(registry).stream()
    stream.feed(f"the key is {secret[:10]}")
    assert stream.release() == "the key is "
    stream.feed(f"\n{secret[10:]} and more")
    assert stream.release() == "[REDACTED:known_secret] and "
    assert stream.flush() == "more"


async def _slow_source(
    parts: list[str], proceed: asyncio.Event, log: list[str]
) -> AsyncIterator[str]:
    """Yields all parts but the last, waits until told (or a generous while), then the last."""
    for part in parts[:-1]:
        yield part
    try:
        await asyncio.wait_for(proceed.wait(), GENEROUS)
    except TimeoutError:
        log.append("source gave up waiting")
    log.append("last part")
    yield parts[-1]


async def test_release_on_time_releases_while_the_source_is_quiet() -> None:
    stream = Redactor().stream()
    proceed = asyncio.Event()
    log: list[str] = []
    shown = ""
    source = _slow_source(["Sure, ", "here it is: ", "42."], proceed, log)
    async for item in release_on_time(stream, source, interval=0.01):
        if isinstance(item, Released):
            log.append(f"released {item.text!r}")
            shown += item.text
            proceed.set()
        else:
            shown += stream.feed(item)
    shown += stream.flush()
    assert log == ["released 'Sure, here it is: '", "last part"]
    assert shown == "Sure, here it is: 42."


async def test_release_on_time_passes_errors_and_stops_its_source() -> None:
    stopped = asyncio.Event()

    async def failing() -> AsyncIterator[str]:
        yield "partial"
        raise ConnectionError("provider went away")

    async def endless() -> AsyncIterator[str]:
        try:
            while True:
                yield "x"
                await asyncio.sleep(0)
        finally:
            stopped.set()

    stream = Redactor().stream()
    with pytest.raises(ConnectionError):
        async for _ in release_on_time(stream, failing()):
            pass
    timed = release_on_time(stream, endless())
    assert await anext(timed) == "x"
    await timed.aclose()  # the consumer stops early: the source is cancelled, not left running
    assert stopped.is_set()


async def test_a_consumer_cancelled_twice_leaves_no_source_running() -> None:
    """A turn cancelled while its source cleans up (the provider's response closing), and
    cancelled again: the cancellation is raised, and the source has ended by then."""
    started, cleaning = asyncio.Event(), asyncio.Event()
    pumping: list[asyncio.Task[object]] = []

    async def closing_slowly() -> AsyncIterator[str]:
        task = asyncio.current_task()
        assert task is not None
        pumping.append(task)
        try:
            yield "x"
            await asyncio.Event().wait()
        finally:
            cleaning.set()
            await asyncio.Event().wait()  # a cleanup slow to finish

    async def consume() -> None:
        async for _ in release_on_time(Redactor().stream(), closing_slowly()):
            started.set()

    consuming = asyncio.create_task(consume())
    async with asyncio.timeout(GENEROUS):
        await started.wait()
        consuming.cancel()
        await cleaning.wait()
    consuming.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(GENEROUS):
            await consuming
    assert pumping[0].done()


# Through a real turn: the model streams slowly, the channel shows the text before the end.


def _slow_model(
    channel: RecordingChannel, parts: list[str], pause_after: int, log: list[str]
) -> FunctionProvider:
    """Streams `parts`, and after the first `pause_after` waits until the channel shows
    something (or a generous while) before it goes on."""

    async def answer(request: ChatRequest) -> AsyncIterator[Any]:
        for part in parts[:pause_after]:
            yield TextDelta(part)
        try:
            await channel.wait_for_messages(1, timeout=GENEROUS)
            log.append(f"channel showed {channel.texts()[0]!r}")
        except TimeoutError:
            log.append("nothing shown")
        log.append("model goes on")
        for part in parts[pause_after:]:
            yield TextDelta(part)
        log.append("last chunk")

    return FunctionProvider(answer)


@pytest.mark.parametrize(
    ("parts", "pause_after"),
    [
        # Short: the whole answer is shorter than a batch, and the model is slow to finish.
        (["Sure, ", "here ", "it ", "is."], 4),
        # Long: the first words are shown before a batch of text has arrived.
        (["The ", "first ", "part; ", *[f"word{i} " for i in range(30)], "end."], 3),
    ],
)
async def test_a_slow_answer_reaches_the_channel_before_the_model_finishes(
    make_config: Any, parts: list[str], pause_after: int
) -> None:
    assert len("".join(parts[:pause_after])) < STREAM_BATCH
    channel = RecordingChannel(console=True)
    log: list[str] = []
    model = _slow_model(channel, parts, pause_after, log)
    async with Gateway(make_config(), provider=model, channels={"test": channel}) as gw:
        await channel.push("answer slowly")
        for _ in range(int(GENEROUS * 100)):
            if gw.sessions.active == 0 and "last chunk" in log:
                break
            await asyncio.sleep(0.01)
    assert log[0].startswith("channel showed") and log[1:] == ["model goes on", "last chunk"], log
    shown_first = log[0].removeprefix("channel showed ")
    assert shown_first.strip("'") and "".join(parts).startswith(shown_first.strip("'"))
    assert channel.texts() == ["".join(parts)]


async def test_the_handoff_keeps_every_item_in_order_across_a_timed_out_wait() -> None:
    """The source's items reach the consumer in order, whether they were waiting already,
    arrived while it waited, or arrived after a wait that timed out."""
    from bot.security.release import _Handoff

    handoff: _Handoff[int] = _Handoff()
    handoff.put(1)
    assert not handoff.empty() and handoff.get_nowait() == 1 and handoff.empty()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await handoff.get()
    handoff.put(2)  # after the timed-out wait: not handed to the waiter that gave up
    waiting = asyncio.create_task(handoff.get())
    await asyncio.sleep(0)
    handoff.put(3)
    assert await waiting == 2
    assert await handoff.get() == 3
    assert handoff.empty()
