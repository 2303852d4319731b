"""Stream text released on time: a redacted stream's held-back text is judged again when
its source has been quiet for RELEASE_INTERVAL (see bot/security/redact.py)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from bot.tasks import cancel_and_wait

if TYPE_CHECKING:
    from bot.security.redact import StreamRedactor

T = TypeVar("T")

#: seconds text may wait for more of the stream before it is judged as it is
RELEASE_INTERVAL = 0.25


@dataclass(frozen=True, slots=True)
class Released:
    """Text a stream released on time, between the events of its source."""

    text: str


class _End:
    """The source is exhausted."""


class _Handoff(Generic[T]):
    """The source task's items for the one consumer: a deque and at most one waiting getter.
    An asyncio.Queue also counts unfinished tasks, keeps an event and a queue of putters,
    none of which one producer and one consumer need, and it was made for every turn."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    def get_nowait(self) -> T:
        return self._items.popleft()

    async def get(self) -> T:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:  # a timeout or a cancellation leaves the items where they are
                self._waiter = None
        return self._items.popleft()


async def release_on_time(
    stream: StreamRedactor, events: AsyncIterator[T], interval: float = RELEASE_INTERVAL
) -> AsyncGenerator[T | Released, None]:
    """The events of `events`, and `Released` text whenever text fed to `stream` has waited
    `interval` seconds without the source producing anything.

    The caller feeds `stream` from the events. The source runs in a task of its own, so the
    clock can stop waiting for it without interrupting it; all of it runs in that one task, so
    a timeout it sets around its own yields keeps working. Closing this iterator cancels it.
    """
    queue: _Handoff[T | _End | BaseException] = _Handoff()
    source = asyncio.create_task(_pump(events, queue))
    loop = asyncio.get_running_loop()
    deadline: float | None = None
    try:
        while True:
            try:
                if not queue.empty() or deadline is None:
                    # no clock to set: an event waiting, or no text held back
                    item = queue.get_nowait() if not queue.empty() else await queue.get()
                else:
                    async with asyncio.timeout_at(deadline):
                        item = await queue.get()
            except TimeoutError:
                deadline = None
                if released := stream.release():
                    yield Released(released)
                continue
            if isinstance(item, _End):
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            if not stream.waiting:
                deadline = None
            elif deadline is None:
                deadline = loop.time() + interval
    finally:
        # waits out the source's own cleanup, even when the consumer is cancelled again
        await cancel_and_wait(source)


async def _pump(events: AsyncIterator[T], queue: _Handoff[T | _End | BaseException]) -> None:
    try:
        async for event in events:
            queue.put(event)
    except (Exception, asyncio.CancelledError) as exc:  # raised again by the consumer
        queue.put(exc)
    else:
        queue.put(_End())
