"""The gate a turn passes before it builds its model request: in a burst, the first turns'
requests are written while the later ones are still being built.

Turns that arrive together move through their stages together: each batch of store writes
wakes all of them in one pass of the event loop. Without the gate, the pass that builds the
requests (the agent, the provider chain, the body, aiohttp's request and connect) built all
2,000 of a burst before the loop looked at a single socket, and a request is written several
passes after its build (connect, connection made, the body's writer task): the model server
sat idle for all of that and then received every request at once. Through the gate, at most
`size` turns are between it and their request at a time, first come first served, so each
pass stays short and the sockets of the first requests are served between the passes that
build the next ones.

A slot is held only up to the request (`request_leaving`, called as the provider is asked),
never across a model call. Once answers come back they compete with the builds for the
loop, and holding turns back would only delay them: the first event of an answer lets
every waiting turn through at once (`answers_arriving`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextvars import ContextVar

#: turns between the gate and their request at once
GATE_SIZE = 128


class _Slot:
    __slots__ = ("_gate",)

    def __init__(self, gate: BurstGate | None) -> None:
        self._gate = gate

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate._hand_on()


#: the slot of the turn running in this context (the agent's task copies it)
_held: ContextVar[_Slot | None] = ContextVar("decapod_burst_slot", default=None)


class BurstGate:
    """At most `size` turns at a time between the gate and their model request; the rest
    wait in the order they came, until a slot frees or the first answers arrive."""

    def __init__(self, size: int = GATE_SIZE) -> None:
        if size < 1:
            raise ValueError(f"a burst gate lets at least one turn through, not {size}")
        self.size = size
        self._free = size
        self._waiting: deque[asyncio.Future[_Slot]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def enter(self) -> _Slot:
        """Wait for a slot; it is this context's until `release` or `request_leaving`."""
        if not self._waiting and self._free > 0:
            self._free -= 1
            slot = _Slot(self)
        else:
            waiter: asyncio.Future[_Slot] = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                slot = await waiter
            except BaseException:  # cancelled, or the turn's stream closed while it waited
                if waiter.done() and not waiter.cancelled():
                    waiter.result().release()  # handed over as the wait was cancelled
                elif waiter in self._waiting:
                    self._waiting.remove(waiter)
                raise
        _held.set(slot)
        return slot

    def answers_arriving(self) -> None:
        """Let every waiting turn through: answers now compete with the builds anyway."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(_Slot(None))  # holds no slot: nothing to give back

    def _hand_on(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(_Slot(self))  # the freed slot passes straight on
                return
        self._free += 1


def request_leaving() -> None:
    """The turn in this context is about to send its model request: its slot is free."""
    slot = _held.get()
    if slot is not None:
        slot.release()
