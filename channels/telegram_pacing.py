"""Telegram's send limits: about one message a second per chat, twenty a minute per group and
thirty a second for the whole bot. Telegram does not publish exact numbers; going over them
earns a 429 with retry_after, which pauses the whole bot (see channels/base.py).

The windows slide: a group may send twenty messages in any sixty seconds, never twenty-one.

Why not python-telegram-bot's own AIORateLimiter (`ExtBot(rate_limiter=...)`, the
`[rate-limiter]` extra): it cannot give these guarantees.
- It has no per-chat limit: only the whole bot and each group (negative chat ids) are
  limited, so a private chat gets answers as fast as the bot-wide 30 a second allows.
- aiolimiter's AsyncLimiter is a leaky bucket: twenty go at once, then one every three
  seconds, so a group gets a 21st message three seconds after a burst of twenty.
- RetryAfter: with its default max_retries=0 it re-raises and pauses nothing. With retries,
  the pause is an event the limited request clears and every request sets again in a
  `finally` as it ends, so any request finishing during the pause lifts it for everyone.
Here a 429 pauses every send for retry_after (channels/base.py), and the pacer takes its
clock as an argument, so the default limits are checked on a virtual clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

#: forget per-chat state of this many idle chats at a time, so memory stays flat
_PRUNE_AT = 1024
#: Telegram counts arrivals, which trail our sends by a varying network delay; windows a
#: little longer than Telegram's keep the count right as Telegram sees it
_WINDOW_MARGIN = 0.02


@dataclass(frozen=True, slots=True)
class RateLimits:
    chat_interval_s: float = 1.0
    group_limit: int = 20
    group_window_s: float = 60.0
    global_limit: int = 30
    global_window_s: float = 1.0


class _Window:
    """Timestamps of the sends inside one sliding window."""

    __slots__ = ("limit", "span", "stamps")

    def __init__(self, limit: int, span: float) -> None:
        self.limit, self.span = limit, span * (1 + _WINDOW_MARGIN)
        self.stamps: deque[float] = deque()

    def wait(self, now: float) -> float:
        while self.stamps and self.stamps[0] <= now - self.span:
            self.stamps.popleft()
        if len(self.stamps) < self.limit:
            return 0.0
        return self.stamps[0] + self.span - now


class SendPacer:
    """Says how long a send must wait, and records the sends that go out. No clock of its
    own: the caller passes `now`, so the same rules run on any clock."""

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self._chat_next: dict[str, float] = {}
        self._groups: dict[str, _Window] = {}
        self._global = _Window(limits.global_limit, limits.global_window_s)

    def wait(self, chat_id: str, is_group: bool, now: float) -> float:
        waits = [self._chat_next.get(chat_id, now) - now, self._global.wait(now)]
        group = self._groups.get(chat_id) if is_group else None
        if group is not None:
            waits.append(group.wait(now))
        return max(waits)

    def record(self, chat_id: str, is_group: bool, now: float) -> None:
        if len(self._chat_next) >= _PRUNE_AT:
            self._prune(now)
        self._chat_next[chat_id] = now + self.limits.chat_interval_s
        self._global.stamps.append(now)
        if is_group:
            window = self._groups.get(chat_id)
            if window is None:
                window = self._groups[chat_id] = _Window(
                    self.limits.group_limit, self.limits.group_window_s
                )
            window.stamps.append(now)

    def _prune(self, now: float) -> None:
        for chat_id in [c for c, t in self._chat_next.items() if t <= now]:
            del self._chat_next[chat_id]
        for chat_id in [c for c, w in self._groups.items() if w.wait(now) == 0 and not w.stamps]:
            del self._groups[chat_id]
