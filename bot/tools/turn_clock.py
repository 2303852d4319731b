"""The turn's deadline as the tools see it: how long is left, and time spent waiting for a
person (the owner's approval) held back, once per turn.

The agent (bot/agent) makes one TurnClock per turn around its `asyncio.timeout`; a tool reads
it through `ToolContext.turn_clock`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from bot.errors import ToolDenied

#: what a step (a command, a write) leaves of the turn for the model to read its result and
#: answer; a short `turn_deadline_s` leaves a quarter of itself instead, so exec stays usable
ANSWER_ROOM_S = 10.0
#: the least time a step is started with
SHORTEST_RUN_S = 1.0


class TurnClock:
    def __init__(self, deadline: asyncio.Timeout, length_s: float) -> None:
        self.deadline = deadline
        #: the turn's whole deadline (`turn_deadline_s`)
        self.length_s = length_s
        #: a request to the owner in this turn was denied or went unanswered: no more are
        #: sent, each would hold the session (and nag the owner) again
        self.owner_refused = False
        #: seconds of waiting for a person still to be held back; None until the first wait
        #: sets it: one approval window per turn, however many requests the turn makes
        self.credit_s: float | None = None
        self._waiting = False

    def seconds_left(self) -> float | None:
        """How long the turn may still run; None when the deadline is not set."""
        when = self.deadline.when()
        return None if when is None else when - asyncio.get_running_loop().time()

    def room_s(self, refused: str) -> float | None:
        """How long a step may take and still leave the model room to answer (None: no
        deadline). Under `SHORTEST_RUN_S` it raises ToolDenied("`refused`: ..."): past the
        deadline the whole turn is stopped, and the person gets "that took too long"."""
        left = self.seconds_left()
        if left is None:
            return None
        room = left - min(ANSWER_ROOM_S, self.length_s / 4)
        if room < SHORTEST_RUN_S:
            raise ToolDenied(
                f"{refused}: this turn has {max(0.0, left):.1f} seconds left, too few to do "
                "this and answer; answer with what you have"
            )
        return room

    def hold_for(self, at_most: float) -> float:
        """How long a wait for a person asking for `at_most` seconds would be held back."""
        return at_most if self.credit_s is None else min(at_most, self.credit_s)

    @contextlib.contextmanager
    def waiting_for_a_person(self, at_most: float) -> Iterator[None]:
        """Time spent waiting for a person (up to `at_most` seconds, and at most one such
        window over the whole turn) does not count against the turn's deadline: otherwise
        the turn would give up long before the request it announced expires, and the owner's
        answer would find nothing. Tool calls run one at a time, so waits never overlap."""
        if self._waiting:
            raise RuntimeError("a turn waits for one person's answer at a time")
        when = self.deadline.when() if not self.deadline.expired() else None
        if when is None:
            yield
            return
        loop = asyncio.get_running_loop()
        held = self.hold_for(at_most)
        self.credit_s = held if self.credit_s is None else self.credit_s
        started = loop.time()
        self._waiting = True
        self.deadline.reschedule(when + held)
        try:
            yield
        finally:
            self._waiting = False
            used = min(loop.time() - started, held)
            self.credit_s -= used
            if not self.deadline.expired():
                self.deadline.reschedule(when + used)
