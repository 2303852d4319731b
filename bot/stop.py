"""/stop: end a person's running turn at once, wherever it waits.

A turn's model-and-tools part runs in a task of its own (the reply path's pump, see
`release_on_time`); /stop cancels that task, so the cancellation lands wherever the turn
waits: in the provider's stream (the HTTP request is closed), in a sandbox command (whose
process tree or container is killed on the way out, as on a timeout), or in an approval
(which is withdrawn). The cancellation becomes `TurnStopped`, so the reply path ends the
answer with a short note and the turn is stored as `stopped` like any finished turn.

Before that, the reading of a message's attachments (`stoppable_step`) is stopped the same
way; the model was never asked, so only the note is said and no turn is stored. One
`RunningTurn` covers a chat turn from its attachments to its answer (bot/turns.py), so a stop
that lands between two steps (a line said about an attachment, memory recall) is kept and
raised by the next step that can be stopped. Either way the delivery is done and never runs
again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

from bot.agent import TurnResult
from bot.commands import CommandContext, CommandTable
from bot.providers.base import ChatMessage

T = TypeVar("T")

STOPPED_NOTE = "Stopped."


class TurnStopped(Exception):
    """The person stopped the turn with /stop."""


class RunningTurn:
    __slots__ = ("_runner", "finished", "person_id", "stopped")

    def __init__(self, person_id: str) -> None:
        self.person_id = person_id
        self.stopped = False
        #: the model and its tools are done; only the answer's last sending is left
        self.finished = False
        self._runner: asyncio.Task[object] | None = None

    def stop(self) -> None:
        self.stopped = True
        if self._runner is not None and not self._runner.done():
            self._runner.cancel()


class RunningTurns:
    """The turn running in each session (one at a time per session)."""

    def __init__(self) -> None:
        self._by_session: dict[str, RunningTurn] = {}
        #: asks the replica running the session's turn to stop it (PostgreSQL replicas);
        #: True when another replica runs it
        self.elsewhere: Callable[[str, str, bool], Awaitable[bool]] | None = None

    @contextlib.contextmanager
    def track(self, session_key: str, person_id: str) -> Iterator[RunningTurn]:
        turn = self._by_session[session_key] = RunningTurn(person_id)
        try:
            yield turn
        finally:
            if self._by_session.get(session_key) is turn:
                del self._by_session[session_key]

    def stop(self, session_key: str, person_id: str, *, anyone: bool = False) -> bool:
        """Stop the turn running in the session if it is the person's (`anyone`: whoever's);
        False when there is none to stop."""
        turn = self._by_session.get(session_key)
        if turn is None or turn.stopped or turn.finished:
            return False
        if not (anyone or turn.person_id == person_id):
            return False
        turn.stop()
        return True


async def stoppable(events: AsyncIterator[T], turn: RunningTurn) -> AsyncIterator[T]:
    """`events`, iterated in the task that /stop cancels; a stop ends them with TurnStopped."""
    task = asyncio.current_task()
    turn._runner = task
    try:
        if turn.stopped:
            raise TurnStopped
        async for event in events:
            yield event
    except asyncio.CancelledError:
        if not turn.stopped or task is None:
            raise  # a drain or a shutdown, not /stop
        task.uncancel()
        raise TurnStopped from None
    finally:
        turn._runner = None


async def stoppable_step(step: Awaitable[T], turn: RunningTurn) -> T:
    """`step` (the reading of a message's attachments, before there is an answer), run in a
    task of its own that /stop cancels; a stop ends it with TurnStopped."""
    task = asyncio.ensure_future(step)
    turn._runner = task
    try:
        result = await task
        if turn.stopped:
            # /stop came after the step was done and before this resumed: its cancel found
            # nothing to end, yet the person was told the turn stops
            raise TurnStopped
        return result
    except asyncio.CancelledError:
        caller = asyncio.current_task()
        if not turn.stopped or (caller is not None and caller.cancelling()):
            raise  # a drain or a shutdown, not /stop
        raise TurnStopped from None
    finally:
        turn._runner = None


def stopped_result(written: list[str], redact: Callable[[str], str]) -> TurnResult:
    """What a stopped turn keeps: the text the model had written, with the note the person
    saw; no tool call, since one without its result would break the next request."""
    text = redact("".join(written))
    shown = f"{text}\n\n{STOPPED_NOTE}" if text else STOPPED_NOTE
    return TurnResult(messages=[ChatMessage("assistant", shown)], text=text, outcome="stopped")


def register_stop_command(table: CommandTable, turns: RunningTurns) -> None:
    @table.add("stop", "Stop the answer I am working on", immediate=True)
    async def stop(ctx: CommandContext) -> str:
        anyone = ctx.role == "owner"
        key = ctx.message.session_key
        if turns.stop(key, ctx.person_id, anyone=anyone) or (
            turns.elsewhere is not None and await turns.elsewhere(key, ctx.person_id, anyone)
        ):
            # answered too (a platform's slash command waits for an answer); the stopped
            # answer itself ends with STOPPED_NOTE
            return "Stopping it."
        return "Nothing of yours is running here."
