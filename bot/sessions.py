"""Sessions: one turn at a time per session, many sessions at once under a global cap.

Each session key gets a queue and, while it has work, one worker task. Idle sessions drop
their worker and, past `max_cached`, their cached history, so memory stays flat however
many people write.

A turn the handler asks to run again (the store refused it) runs again in its worker,
after the pause the handler names and before the session's next message: a session's
turns are answered and stored in the order they came. The pause holds no place under the
cap, and a stop ends it at once; what it held up stays pending for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot.messages import Conversation, InboundMessage
from bot.providers.base import ChatMessage

if TYPE_CHECKING:
    from bot.store import Store
    from bot.store.repos import SessionRow

log = logging.getLogger("decapod.sessions")


class Session:
    __slots__ = ("busy", "conversation", "history", "key", "queue", "row", "worker")

    def __init__(self, key: str) -> None:
        self.key = key
        self.queue: asyncio.Queue[InboundMessage] = asyncio.Queue()
        self.worker: asyncio.Task[None] | None = None
        self.busy = False
        self.row: SessionRow | None = None
        #: where the session's latest message came from (replies to the owner go there)
        self.conversation: Conversation | None = None
        #: (turn row id, message), oldest first; None until loaded
        self.history: list[tuple[int, ChatMessage]] | None = None

    @property
    def idle(self) -> bool:
        return not self.busy and self.queue.empty() and self.worker is None

    def messages(self) -> list[ChatMessage]:
        return [m for _, m in self.history or ()]


#: runs one try of a message's turn; seconds to wait before the same message is tried again,
#: or None when it is finished
Handler = Callable[[Session, InboundMessage], Awaitable[float | None]]


class SessionManager:
    def __init__(
        self,
        store: Store,
        handler: Handler,
        *,
        max_concurrent: int = 64,
        history_limit: int = 40,
        max_cached: int = 2000,
        idle_exit_s: float = 30.0,
    ) -> None:
        self.store = store
        self.handler = handler
        self.history_limit = history_limit
        self.max_cached = max_cached
        self.idle_exit_s = idle_exit_s
        self._cap = asyncio.Semaphore(max_concurrent)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        # counted as they change, so no per-message walk over every session is needed
        self._queued = 0
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        #: False after a walk found too few idle sessions to evict, until a worker ends: a
        #: session becomes idle only then, so walking every busy one again finds nothing
        self._may_evict = True
        #: set by `drain`: a turn the handler asks to run again is left for the next start
        self._stopping = False
        #: the tasks pausing before another try of a turn, which `drain` ends at once
        self._pausing: set[asyncio.Task[object]] = set()
        #: messages left queued by workers the drain ended: not waited for
        self._left = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, key: str) -> Session:
        session = self._sessions.get(key)
        if session is None:
            # room first: the new session, idle until its message is queued, must never be
            # the one dropped (its worker would run on outside the cache, and the session's
            # next message would start a second worker beside it)
            self._evict(adding=1)
            session = self._sessions[key] = Session(key)
        else:
            self._sessions.move_to_end(key)
        return session

    def submit(self, message: InboundMessage) -> None:
        session = self.get(message.session_key)
        session.queue.put_nowait(message)
        self._queued += 1
        self._idle.clear()
        if session.worker is None:
            session.worker = asyncio.create_task(self._work(session), name=f"session:{session.key}")

    @property
    def retries_waiting(self) -> int:
        """Turns pausing before another try (the store refused them)."""
        return len(self._pausing)

    @property
    def stopping(self) -> bool:
        """Whether the drain has begun."""
        return self._stopping

    @property
    def queue_depth(self) -> int:
        return self._queued

    @property
    def active(self) -> int:
        return self._busy

    async def _work(self, session: Session) -> None:
        respawn = True
        try:
            while True:
                if not session.queue.empty():
                    # already there (a new session's first message): no idle clock to set
                    message = session.queue.get_nowait()
                else:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for returns the message when
                    # a cancellation (drain) lands as the message arrives, and the worker runs on
                    try:
                        async with asyncio.timeout(self.idle_exit_s):
                            message = await session.queue.get()
                    except TimeoutError:
                        return
                session.busy = True  # busy from the moment it leaves the queue
                self._queued -= 1
                self._busy += 1
                try:
                    await self.retried(functools.partial(self._capped, session, message))
                except Exception:
                    # the handler reports to the person; a bug must not kill the session
                    log.exception("turn failed in session %s", session.key)
                finally:
                    session.busy = False
                    self._busy -= 1
                if session.queue.empty():
                    self._check_idle()
        except asyncio.CancelledError:
            respawn = False  # a drain: what is still queued stays pending for the next start
            if self._stopping:
                self._left += session.queue.qsize()  # and the drain does not wait for it
            raise
        finally:
            session.worker = None
            self._may_evict = True
            if respawn and not session.queue.empty():  # raced with a submit while exiting
                session.worker = asyncio.create_task(self._work(session))
            self._check_idle()

    async def retried(self, attempt: Callable[[], Awaitable[float | None]]) -> None:
        """`attempt` (one try of a turn), again after each pause it asks for, until it is
        finished or the gateway stops: then it is left pending, with what is queued behind
        it. The caller holds what must be held across the pauses (not a place under the cap
        in the session's own worker)."""
        while (again := await attempt()) is not None:
            if self._stopping:
                raise asyncio.CancelledError
            await self._pause(again)

    async def _capped(self, session: Session, message: InboundMessage) -> float | None:
        async with self._cap:
            return await self.handler(session, message)

    async def _pause(self, seconds: float) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pausing.add(task)
        try:
            await asyncio.sleep(seconds)
        finally:
            self._pausing.discard(task)

    def _check_idle(self) -> None:
        if self._queued <= self._left and not self._busy:
            self._idle.set()

    def _evict(self, adding: int = 0) -> None:
        excess = len(self._sessions) + adding - self.max_cached
        if excess <= 0:
            return  # not a copy of every key per new session (a burst of 2,000 made 4 M)
        if not self._may_evict:
            return  # past the bound with every session busy: each new one walked them all
        idle: list[str] = []
        for key, session in self._sessions.items():  # least recently used first
            if session.idle:
                idle.append(key)
                if len(idle) == excess:
                    break
        for key in idle:
            del self._sessions[key]
        if len(idle) < excess:
            self._may_evict = False

    async def load(self, session: Session) -> None:
        """Load the open session row and its history window, once."""
        if session.history is not None and session.row is not None:
            return
        row = await self.store.sessions.current(session.key)
        session.row = row
        if row.new:  # a session row made just now holds no turns (a new person's first turn)
            session.history = []
            return
        session.history = await self.store.turns.history(
            row.id, row.summary_upto, self.history_limit
        )

    def remember(self, session: Session, rows: list[tuple[int, ChatMessage]]) -> None:
        if session.history is None:
            return
        session.history.extend(rows)
        overflow = len(session.history) - self.history_limit
        if overflow > 0:
            del session.history[:overflow]
            # never start the window with a tool result cut off from its call
            while session.history and session.history[0][1].role == "tool":
                del session.history[0]

    async def reset(self, session: Session) -> None:
        session.row = await self.store.sessions.reset(session.key)
        session.history = []

    async def wait_idle(self) -> None:
        """Until no session has a queued or running turn (for tests and benches)."""
        await self._idle.wait()

    async def drain(self, grace_s: float) -> bool:
        """Wait for queued and running turns to finish; cancel what is left after `grace_s`.
        Cancelled turns stay pending in the inbound table and run again at the next start;
        a turn pausing before another try after a refusal by the store is cancelled at once."""
        self._stopping = True
        for task in list(self._pausing):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await self._idle.wait()
        workers = [s.worker for s in self._sessions.values() if s.worker is not None]
        for w in workers:
            w.cancel()
        if workers:
            # wait() does not raise the workers' CancelledError, so a cancellation of the
            # caller still propagates
            await asyncio.wait(workers)
        return not workers or self._idle.is_set()
