"""The deadlines of one streamed model response: the first token, then each gap between chunks."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import Any, TypeVar

from bot.errors import ProviderTimeout

T = TypeVar("T")


class ChunkTimer:
    """Deadlines for one streamed response.

    The first chunk must arrive within `first_token_s` of sending the request (headers
    included); after that, each gap between chunks is bounded by `idle_s`. Time the consumer
    spends between chunks is not counted: each wait starts its own clock.

    One timer serves the whole stream, re-armed lazily: a wait only moves the deadline, and
    the timer, when it goes off before the deadline of the wait in progress, sets itself again
    for that deadline (an `asyncio.timeout` per read cost a timer, its heap push and a scope
    object for every chunk). Only a deadline earlier than the one armed (the first idle gap
    when it is shorter than the first-token wait) arms a new one. Callers `close` it when the
    stream ends; a wait that raises closes it too.
    """

    __slots__ = (
        "_armed_at",
        "_cancelling",
        "_deadline",
        "_expired",
        "_first_deadline",
        "_first_token_s",
        "_handle",
        "_idle_s",
        "_loop",
        "_waiter",
        "started",
    )

    def __init__(self, first_token_s: float, idle_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._first_deadline = self._loop.time() + first_token_s
        self._first_token_s = first_token_s
        self._idle_s = idle_s
        self.started = False
        #: the deadline of the wait in progress (or of the last one)
        self._deadline = self._first_deadline
        self._handle: asyncio.TimerHandle | None = None
        #: when the armed timer goes off
        self._armed_at = math.inf
        #: the task in a wait now; None between waits, when time is the consumer's
        self._waiter: asyncio.Task[Any] | None = None
        self._cancelling = 0
        #: the timer cancelled the waiting task
        self._expired = False

    def phase(self) -> str:
        return "idle" if self.started else "first_token"

    def seconds(self) -> float:
        return self._idle_s if self.started else self._first_token_s

    async def request(self, awaitable: Awaitable[T]) -> T:
        """Await the response headers; counted against the first-token deadline."""
        return await self._within(awaitable, self._first_deadline)

    async def chunk(self, awaitable: Awaitable[T]) -> T:
        deadline = self._loop.time() + self._idle_s if self.started else self._first_deadline
        value = await self._within(awaitable, deadline)
        self.started = True
        return value

    def close(self) -> None:
        """The stream is over: no timer is left in the loop's heap."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_at = math.inf

    async def _within(self, awaitable: Awaitable[T], deadline: float) -> T:
        task = asyncio.current_task()
        assert task is not None, "a stream is read inside a task"
        self._deadline = deadline
        if deadline < self._armed_at:
            self.close()
            self._arm(deadline)
        self._waiter = task
        self._cancelling = task.cancelling()
        try:
            value = await awaitable
        except BaseException as exc:
            self._waiter = None
            self.close()
            if self._take_back_cancel(task) and isinstance(exc, asyncio.CancelledError):
                raise ProviderTimeout(self.phase(), self.seconds()) from None
            raise
        self._waiter = None
        self._take_back_cancel(task)  # a cancel the awaited code swallowed
        return value

    def _take_back_cancel(self, task: asyncio.Task[Any]) -> bool:
        """True when the timer's cancel was the only one: the wait ran out of time."""
        if not self._expired:
            return False
        self._expired = False
        return task.uncancel() <= self._cancelling

    def _arm(self, when: float) -> None:
        self._armed_at = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        armed_at = self._armed_at
        self._handle = None
        self._armed_at = math.inf
        task = self._waiter
        if task is None:
            return  # between waits: the next wait arms it again
        if self._deadline > armed_at:
            self._arm(self._deadline)  # the wait in progress began after this was armed
            return
        self._expired = True
        task.cancel()
