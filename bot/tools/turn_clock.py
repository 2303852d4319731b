"""The turn's deadline as the tools see it: how long is left, and time spent waiting for a
person (the owner's approval) held back, once per turn.

The agent (bot/agent) makes one TurnClock per turn around its `asyncio.timeout`; a tool reads
it through `ToolContext.turn_clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class TurnClock:
    def __init__(self, deadline: asyncio.Timeout, length_s: float) -> None:
        self.deadline = deadline
        #: the turn's whole deadline (`turn_deadline_s`)
        self.length_s = length_s
        #: a request to the owner in this turn was denied or went unanswered: no more are
        #: sent, each would hold the session (and nag the owner) again
        self.owner_refused = False
        #: seconds of waiting still to be held back; set by the first wait: one approval
        #: window per turn, however many requests the turn makes
        self._credit_s: float | None = None
        self._waits = 0
        self._held_from = 0.0
        self._started = 0.0
        self._granted = 0.0

    def seconds_left(self) -> float | None:
        """How long the turn may still run; None when the deadline is not set."""
        when = self.deadline.when()
        return None if when is None else when - asyncio.get_running_loop().time()

    @contextlib.contextmanager
    def waiting_for_a_person(self, at_most: float) -> Iterator[None]:
        """Time spent waiting for a person (up to `at_most` seconds, and at most one such
        window over the whole turn) does not count against the turn's deadline: otherwise
        the turn would give up long before the request it announced expires, and the owner's
        answer would find nothing. Waits that overlap share one window."""
        when = self.deadline.when() if not self.deadline.expired() else None
        if when is None:
            yield
            return
        loop = asyncio.get_running_loop()
        if self._waits == 0:
            if self._credit_s is None:
                self._credit_s = at_most
            self._held_from, self._started = when, loop.time()
            self._granted = min(at_most, self._credit_s)
            self.deadline.reschedule(when + self._granted)
        self._waits += 1
        try:
            yield
        finally:
            self._waits -= 1
            if self._waits == 0:
                used = min(loop.time() - self._started, self._granted)
                self._credit_s = max(0.0, (self._credit_s or 0.0) - used)
                if not self.deadline.expired():
                    self.deadline.reschedule(self._held_from + used)
