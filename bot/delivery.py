"""An answer on its way out, and what happens to it when the platform errors.

Every send and edit of an answer is recorded with its delivery (`Outbox`), so that:

- a send that still fails after the channel's own retries keeps the whole answer with the
  delivery and tries again later (`RETRY_DELAYS_S`), sending only what the person has not
  seen yet;
- a refusal (DeliveryRefused), or a send still failing at its `MAX_ATTEMPTS`th try (counted
  across restarts), ends the delivery as failed with its reason and tells the owner once;
  a failed delivery never costs another model call;
- a restart never asks the model again for an answer that was partly shown: a complete one
  is sent on from where it stopped, one the model was still writing gets a one-line note;
- a turn the store refused to record (busy, full, read-only, failing: StorageUnavailable)
  runs again while the gateway runs, in its session's worker before the session's next
  message, after pauses that grow to `STORAGE_RETRY_DELAYS_S`'s last; a turn whose
  answer was already shown keeps what is left to store (`store_or_keep`), so its retry
  asks the model nothing and sends nothing again;
- among replicas, no text of an answer goes to the channel unless this replica still holds
  the session (`SessionFence`): one that lost it under load or out of reach of the
  database before showing anything stops the turn unsent and unrecorded, and the new
  holder runs the delivery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

from bot.errors import ChannelError, DeliveryRefused, StorageUnavailable
from bot.messages import Conversation, InboundMessage, SentRef
from bot.store.deliveries import DeliveryRepo, DeliveryState, DeliveryUpdate, Key, OpenDelivery
from bot.tasks import pause_after

log = logging.getLogger("decapod.delivery")

#: tries of one answer's sending, the first included, before it ends as failed
MAX_ATTEMPTS = 3
#: seconds before the second and the third try
RETRY_DELAYS_S = (15.0, 60.0)
#: an answer being edited in place is recorded at most this often (every new message is)
SAVE_EVERY_S = 2.0
#: seconds before each next try of a turn the store refused; the last repeats until it is
#: stored or the gateway stops (a lock another process holds clears in seconds, a full
#: disk when the operator frees space)
STORAGE_RETRY_DELAYS_S = (2.0, 10.0, 30.0, 60.0, 300.0)
INTERRUPTED_NOTE = "(My answer above was cut off by a restart. Ask me again if you need the rest.)"


def delivery_key(message: InboundMessage) -> Key:
    return (message.conversation.channel, message.id)


class SessionFence(Protocol):
    async def confirm(self, session_key: str) -> bool:
        """Whether this process still holds the session, for at least the time a send
        takes; False once another replica took it over."""
        ...


class SessionNotHeld(Exception):
    """Another replica took the session over while this one ran a turn of it: nothing more
    of the answer is sent and nothing is recorded; the new holder runs the delivery."""


class _AlwaysHeld:
    """One process: every session is its own."""

    async def confirm(self, session_key: str) -> bool:
        return True


class Outbox:
    """One delivery's answer and what of it the person can see; a channels.ReplyProgress
    that records itself as the channel sends."""

    def __init__(
        self,
        repo: DeliveryRepo,
        key: Key,
        state: DeliveryState,
        session_key: str = "",
        fence: SessionFence | None = None,
    ) -> None:
        self.repo, self.key, self.state = repo, key, state
        self.session_key = session_key
        self._fence = fence or _AlwaysHeld()
        self._base = state.shown  # a resumed answer's channel offsets start here
        self._earlier = list(state.refs)
        self._saved = (len(state.refs), time.monotonic())
        #: this try sent or edited a message of the answer
        self._shown_here = False
        #: the store refused a record of progress in this try: no more are asked of it (each
        #: would wait out the busy timeout while the answer waits); the turn's write records it
        self._progress_refused = False

    async def collect(self, parts: AsyncIterator[str]) -> AsyncGenerator[str, None]:
        """Pass the answer on to the channel, keeping it."""
        # one process holds every session: no fence layer on the per-chunk path
        held = parts if isinstance(self._fence, _AlwaysHeld) else self.fenced(parts)
        async for part in held:
            self.state.answer += part
            yield part

    async def fenced(self, parts: AsyncIterator[str]) -> AsyncGenerator[str, None]:
        """`parts`, each passed on only while this process holds the session, and checked
        once more at the end, before the channel sends what it still holds: a replica that
        lost the session raises SessionNotHeld instead of answering a second time. Once
        this try showed the person something, the answer is finished and recorded here:
        stopping it then would leave it cut off, and the new holder would add a note."""
        async for part in parts:
            await self._confirm()
            yield part
        await self._confirm()

    async def _confirm(self) -> None:
        if self._shown_here:
            return
        if not await self._fence.confirm(self.session_key):
            raise SessionNotHeld(self.session_key)

    async def shown(self, refs: Sequence[SentRef], upto: int) -> None:
        self._shown_here = True
        state = self.state
        state.shown = self._base + upto
        state.refs = self._earlier + [ref.message_id for ref in refs]
        count, at = self._saved
        now = time.monotonic()
        if self._progress_refused:
            return
        if len(state.refs) != count or now - at >= SAVE_EVERY_S:
            try:
                await self.repo.save(self.key, state)
            except StorageUnavailable as exc:
                # a mark for a crash, not the answer: it goes on, and the turn's own write
                # records what was shown (or is tried again, see Deliveries.storage_refused)
                log.warning("what was shown in %s is not recorded yet: %s", self.key, exc)
                self._progress_refused = True
                return
            self._saved = (len(state.refs), now)


class Deliveries:
    """The deliveries waiting for another try, and how one ends when it cannot be sent."""

    def __init__(
        self,
        repo: DeliveryRepo,
        *,
        accept: Callable[[InboundMessage], Awaitable[None]],
        notify: Callable[[str], Awaitable[None]],
    ) -> None:
        self.repo = repo
        self._accept = accept
        self._notify = notify
        self._waiting: dict[Key, DeliveryState] = {}
        self._timers: set[asyncio.Task[None]] = set()
        self._stopped = False
        #: tries the store refused, by delivery, while it is refused
        self._refused: dict[Key, int] = {}
        #: what is left of a turn whose answer went out but could not be stored
        self._unstored: dict[Key, Callable[[], Awaitable[None]]] = {}
        #: asked before an answer's text goes out; a replica sets its session leases here
        self.fence: SessionFence = _AlwaysHeld()

    def outbox(self, message: InboundMessage) -> Outbox:
        """The outbox of a delivery about to run: the one it had if this is another try."""
        key = delivery_key(message)
        state = self._waiting.pop(key, DeliveryState())
        return Outbox(self.repo, key, state, message.session_key, self.fence)

    async def resume(self, delivery: OpenDelivery) -> None:
        """An unfinished delivery found at start: run it again now or when its try is due."""
        message, state = delivery.message, delivery.state
        delay = (state.retry_at or 0.0) - time.time()
        if delay > 0 and state.attempts < MAX_ATTEMPTS:
            self._schedule(message, state, delay)
        elif await self.ready(delivery):
            await self._accept(message)  # at once and in order: a session's turns keep theirs

    async def ready(self, delivery: OpenDelivery) -> bool:
        """A stored delivery about to run again: it runs with the state it had (what the
        person saw of its answer); False when no try is left, and it was given up."""
        message, state = delivery.message, delivery.state
        if state.attempts >= MAX_ATTEMPTS:
            await self.give_up(message, state, "no tries left")
            return False
        if state != DeliveryState():
            self._waiting[delivery_key(message)] = state
        return True

    def plan_retry(self, outbox: Outbox, error: ChannelError) -> DeliveryUpdate | None:
        """Count a failed try; the record of the next one, or None when none is left."""
        state = outbox.state
        state.attempts += 1
        if state.attempts >= MAX_ATTEMPTS:
            return None
        delay = pause_after(RETRY_DELAYS_S, state.attempts - 1)
        state.retry_at = time.time() + delay
        return DeliveryUpdate(outbox.key, state, str(error))

    async def retry_or_give_up(
        self,
        message: InboundMessage,
        outbox: Outbox,
        error: ChannelError,
        plan: DeliveryUpdate | None,
    ) -> None:
        """After a try that failed: wait for the next one (its plan is stored), or end it."""
        if plan is None:
            await self.give_up(message, outbox.state, str(error))
            return
        delay = (plan.state.retry_at or 0.0) - time.time()
        log.warning(
            "could not deliver %s (%s); trying again in %.0fs (try %d of %d)",
            _where(message.conversation),
            error,
            delay,
            plan.state.attempts + 1,
            MAX_ATTEMPTS,
        )
        self._schedule(message, plan.state, delay)

    async def failed(self, message: InboundMessage, outbox: Outbox, error: ChannelError) -> None:
        """A try of a stored answer failed: keep it for the next try, or end it."""
        if isinstance(error, DeliveryRefused):
            await self.give_up(message, outbox.state, error.reason)
            return
        plan = self.plan_retry(outbox, error)
        if plan is not None:
            await self.repo.record(plan)
        await self.retry_or_give_up(message, outbox, error, plan)

    async def give_up(
        self, message: InboundMessage, state: DeliveryState, reason: str, *, tell_owner: bool = True
    ) -> None:
        """End a delivery as failed: recorded with its reason, never tried again, the owner
        told once (which is also its one line in the log) unless `tell_owner` is False."""
        await self.repo.fail(delivery_key(message), state, reason)
        if not tell_owner:
            log.info("gave up %s: %s", delivery_key(message), reason)
            return
        await self._notify(
            f"I could not deliver an answer in {_where(message.conversation)} and gave up: "
            f"{reason}."
        )

    def unstored(self, message: InboundMessage) -> Callable[[], Awaitable[None]] | None:
        """What is left of the delivery's turn, kept by `store_or_keep`; None: run it whole."""
        return self._unstored.pop(delivery_key(message), None)

    async def store_or_keep(
        self, message: InboundMessage, rest: Callable[[], Awaitable[None]]
    ) -> None:
        """Run `rest`, the end of a turn whose answer went out (storing it, then what
        follows). When the store refuses it, `rest` is kept for the next try, which runs only
        it: the model is not asked again and nothing is sent twice."""
        try:
            await rest()
        except StorageUnavailable:
            self._unstored[delivery_key(message)] = rest
            raise

    def storage_refused(self, message: InboundMessage, outbox: Outbox) -> tuple[float, bool]:
        """A try of the delivery the store refused: (seconds, first). The session's worker
        runs it again after that pause (with what the person saw of its answer), before the
        session's next message, and again until it is stored or the gateway stops (see
        bot/sessions.py). `first`: the first refusal, when the person is told (once, not on
        every try)."""
        key = delivery_key(message)
        tries = self._refused[key] = self._refused.get(key, 0) + 1
        delay = pause_after(STORAGE_RETRY_DELAYS_S, tries - 1)
        log.warning("trying %s again in %.0fs (store refused try %d)", key, delay, tries)
        self._waiting[key] = outbox.state
        return delay, tries == 1

    def answered(self, message: InboundMessage, outbox: Outbox) -> bool:
        """Whether the person already has this try's answer (what the store refused was only
        its record)."""
        return outbox.state.started or delivery_key(message) in self._unstored

    def storage_took(self, message: InboundMessage) -> None:
        """A try the store did not refuse: the next refusal is told again."""
        self._refused.pop(delivery_key(message), None)

    @property
    def tries_waiting(self) -> int:
        """Tries of failed sends waiting for their time."""
        return len(self._timers)

    def stop(self) -> None:
        """Stop waiting for tries that are not due, and schedule none after this: a send
        failing while the drain runs a turn keeps its stored plan for the next start. (What
        is queued keeps its state: the drain may still run it.)"""
        self._stopped = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def _schedule(self, message: InboundMessage, state: DeliveryState, delay: float) -> None:
        if self._stopped:
            return
        self._waiting[delivery_key(message)] = state
        timer = asyncio.create_task(self._later(message, max(delay, 0.0)))
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def _later(self, message: InboundMessage, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._accept(message)


def _where(conversation: Conversation) -> str:
    place = f"{conversation.channel}:{conversation.chat_id}"
    return f"{place} (thread {conversation.thread_id})" if conversation.thread_id else place
