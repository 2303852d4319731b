"""Per-person rate limits and the cache of recent pages."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class RateLimiter:
    """At most `per_minute` calls per key in any sliding minute."""

    WINDOW_S = 60.0

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._calls: dict[str, deque[float]] = {}

    def take(self, key: str) -> float:
        """0.0 when the call may go ahead (and it is counted); otherwise the seconds until
        it may."""
        now = self.clock()
        calls = self._calls.setdefault(key, deque())
        while calls and calls[0] <= now - self.WINDOW_S:
            calls.popleft()
        if len(calls) >= self.per_minute:
            return calls[0] + self.WINDOW_S - now
        calls.append(now)
        if len(self._calls) > 4096:  # forget people who went quiet
            for idle in [
                k for k, v in self._calls.items() if not v or v[-1] <= now - self.WINDOW_S
            ]:
                del self._calls[idle]
        return 0.0


class TTLCache(Generic[V]):
    """The `size` most recently stored values, each for `ttl_s` seconds."""

    def __init__(
        self, size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self.clock = clock
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def get(self, key: str) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        stored, value = item
        if self.clock() - stored >= self.ttl_s:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: str, value: V) -> None:
        if self.size <= 0 or self.ttl_s <= 0:
            return
        self._items[key] = (self.clock(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
