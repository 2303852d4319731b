"""FailoverProvider: an ordered chain of (provider, model) entries that is itself a Provider.

What each failure does (the policy):

- 429: fail over at once, no sleep; the entry cools for max(Retry-After, 5 s).
- 5xx and connection errors: one retry after 100-300 ms, then fail over.
- timeouts: fail over.
- 401/403 (the provider has already tried its other keys): open for 10 min, tell the owner once.
- billing or quota: open for 1 h, tell the owner once.
- 400: raised as is after one attempt; another model would refuse it too.
- context too long: raised so the caller can compact and retry; only a later entry with a
  larger known window is tried instead.
- a failure before anything visible (text or a tool call) is transparent; after visible text the
  stream ends with Finish(reason="interrupted"), and nothing already sent is sent again.

Every entry has a circuit breaker on a board that outlives turns (see breaker.py). A turn has a
deadline and an attempt budget, so an outage never becomes a retry storm.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

from bot.errors import (
    AllProvidersFailed,
    ContextTooLong,
    ProviderError,
    ProviderHTTPError,
    ProviderTimeout,
)
from bot.providers.base import (
    ChatEvent,
    ChatRequest,
    Finish,
    Provider,
    TextDelta,
    ToolCallEvent,
)
from bot.providers.breaker import (
    Breaker,
    BreakerBoard,
    BreakerSettings,
    EntryState,
    FailoverStats,
    Notify,
    Permit,
)

log = logging.getLogger(__name__)

#: failures worth one quick retry on the same entry
_RETRY_ONCE = frozenset({"server", "connection"})


class CircuitOpen(ProviderError):
    """An entry was skipped because its breaker is open."""

    def __init__(self, entry: str) -> None:
        super().__init__(f"{entry} is cooling down")
        self.entry = entry


@dataclass(frozen=True, slots=True)
class ChainEntry:
    provider: Provider
    model: str
    #: the model's context window, when known (a ContextTooLong may move to a larger one)
    context_window: int | None = None

    @property
    def name(self) -> str:
        return f"{self.provider.name}:{self.model}"


@dataclass(frozen=True, slots=True)
class FailoverPolicy:
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    attempt_budget: int = 4
    deadline_s: float = 90.0
    wait_for_primary: bool = False
    rate_limit_min_cooldown_s: float = 5.0
    auth_cooldown_s: float = 600.0
    billing_cooldown_s: float = 3600.0
    #: the jittered pause before the one retry of a 5xx or connection error
    retry_delay_s: tuple[float, float] = (0.1, 0.3)


def classify(exc: BaseException) -> str:
    """The failure class that decides what the chain does next (and labels the counters)."""
    if isinstance(exc, ContextTooLong):
        return "context_length"
    if isinstance(exc, ProviderTimeout):
        return "timeout"
    if isinstance(exc, ProviderHTTPError):
        if exc.code == "billing":
            return "billing"
        if exc.status in (401, 403):
            return "auth"
        if exc.status == 429:
            return "rate_limit"
        if exc.status == 0:
            return "connection"
        return "server" if exc.retryable else "bad_request"
    if isinstance(exc, ProviderError):
        return "error" if exc.retryable else "bad_request"
    return "unexpected"


@dataclass(slots=True)
class _Turn:
    deadline: float
    calls: int = 0
    attempts: list[tuple[str, BaseException]] = field(default_factory=list)
    retried: set[int] = field(default_factory=set)
    #: after a ContextTooLong, only entries with a larger window than this are tried
    min_window: int | None = None


class FailoverProvider:
    """A Provider over an ordered chain. Long-lived: breaker state is kept across turns.

    Several chains built from one config share a `board`, so that what one chain learns about
    an entry applies to all of them; a chain made without one gets its own (with `clock` and
    `notify`). With `closes_providers`, aclose() also closes the entries' providers.
    """

    def __init__(
        self,
        entries: Sequence[ChainEntry],
        policy: FailoverPolicy | None = None,
        *,
        board: BreakerBoard | None = None,
        clock: Callable[[], float] = time.monotonic,
        notify: Notify | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        name: str = "failover",
        closes_providers: bool = False,
    ) -> None:
        if not entries:
            raise ValueError("a chain needs at least one entry")
        self.name = name
        self.entries = tuple(entries)
        self.policy = policy or FailoverPolicy()
        self.board = board or BreakerBoard(self.policy.breaker, clock=clock, notify=notify)
        self._owns_board = board is None
        self._closes_providers = closes_providers
        self._clock = self.board.clock
        self._sleep = sleep
        self._breakers = [self.board.breaker(e.name, e.provider.name) for e in self.entries]

    def state(self) -> list[EntryState]:
        return self.board.state(list(dict.fromkeys(e.name for e in self.entries)))

    def stats(self) -> FailoverStats:
        return self.board.stats()

    async def aclose(self) -> None:
        if self._owns_board:
            await self.board.aclose()
        if self._closes_providers:
            for provider in {id(e.provider): e.provider for e in self.entries}.values():
                close = getattr(provider, "aclose", None)
                if close is not None:
                    await close()

    async def stream(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        turn = _Turn(deadline=self._clock() + self.policy.deadline_s)
        counts = self.board.counts
        index = 0
        while index < len(self.entries):
            entry, breaker = self.entries[index], self._breakers[index]
            if turn.calls >= self.policy.attempt_budget or self._clock() >= turn.deadline:
                break
            if turn.min_window is not None and (entry.context_window or 0) <= turn.min_window:
                index += 1
                continue
            permit = breaker.try_acquire()
            if permit is None:
                if await self._waited_for_primary(index, turn):
                    continue
                counts["skipped_open"] += 1
                turn.attempts.append((entry.name, CircuitOpen(entry.name)))
                index += 1
                continue

            turn.calls += 1
            counts["calls"] += 1
            visible = False
            finish: Finish | None = None
            failure: Exception | None = None
            events = entry.provider.stream(replace(request, model=entry.model))
            try:
                while True:
                    try:
                        event = await self._next(events, visible, turn)
                    except StopAsyncIteration:
                        break
                    if isinstance(event, Finish):
                        finish = event
                        continue
                    if isinstance(event, ToolCallEvent) or (
                        isinstance(event, TextDelta) and event.text
                    ):
                        visible = True
                    yield event
            except Exception as exc:
                failure = exc
            except BaseException:
                # The caller stopped reading or was cancelled: no verdict on the entry.
                breaker.release(permit)
                raise
            finally:
                aclose = getattr(events, "aclose", None)
                if aclose is not None:
                    await aclose()

            if failure is None:
                breaker.record_success()
                self.board.recovered(entry.provider.name)
                counts["successes"] += 1
                meta = {**(finish.meta if finish else {}), "attempts": turn.calls}
                reason = finish.reason if finish else "stop"
                yield Finish(reason, provider=entry.provider.name, model=entry.model, meta=meta)
                return

            kind = classify(failure)
            self.board.errors[kind] += 1
            self.board.recent.add(entry.name, kind, failure)
            turn.attempts.append((entry.name, failure))
            if kind == "unexpected":
                log.error("provider %s failed unexpectedly", entry.name, exc_info=failure)
            if visible:
                breaker.record_failure(permit, kind)
                counts["interrupted"] += 1
                log.warning("%s broke mid-answer (%s); the answer ends here", entry.name, failure)
                yield Finish(
                    "interrupted",
                    provider=entry.provider.name,
                    model=entry.model,
                    meta={"error": kind, "attempts": turn.calls},
                )
                return
            if kind in ("bad_request", "context_length"):
                # The entry answered; the request is what is wrong.
                breaker.record_success()
                if kind == "bad_request" or not self._larger_window_ahead(index, turn):
                    raise failure
                continue
            self._record_failure(entry, breaker, permit, kind, failure)
            if kind in _RETRY_ONCE and index not in turn.retried:
                turn.retried.add(index)
                delay = random.uniform(*self.policy.retry_delay_s)
                if self._clock() + delay < turn.deadline:
                    await self._sleep(delay)
                    continue
            next_index = self._after_failure(index, turn)
            if index < next_index < len(self.entries):
                counts["failovers"] += 1
                log.warning("%s failed (%s: %s); failing over", entry.name, kind, failure)
            index = next_index

        counts["all_failed"] += 1
        raise AllProvidersFailed(turn.attempts)

    async def _next(
        self, events: AsyncIterator[ChatEvent], visible: bool, turn: _Turn
    ) -> ChatEvent:
        """The next event; until something visible arrives, bounded by the turn's deadline."""
        if visible:
            return await anext(events)
        scope = asyncio.timeout(max(turn.deadline - self._clock(), 0.0))
        try:
            async with scope:
                return await anext(events)
        except TimeoutError:
            if scope.expired():
                raise ProviderTimeout("deadline", self.policy.deadline_s) from None
            raise

    def _record_failure(
        self, entry: ChainEntry, breaker: Breaker, permit: Permit, kind: str, exc: Exception
    ) -> None:
        policy = self.policy
        cooldown: float | None = None
        if kind == "rate_limit":
            retry_after = exc.retry_after if isinstance(exc, ProviderHTTPError) else None
            cooldown = max(retry_after or 0.0, policy.rate_limit_min_cooldown_s)
        elif kind == "auth":
            cooldown = policy.auth_cooldown_s
        elif kind == "billing":
            cooldown = policy.billing_cooldown_s
        breaker.record_failure(permit, kind, cooldown)
        if kind in ("auth", "billing") and cooldown is not None:
            what = "refused its API key" if kind == "auth" else "reports a billing or quota problem"
            self.board.notify_once(
                entry.provider.name,
                kind,
                f"LLM provider '{entry.provider.name}' {what} ({exc}). {entry.name} is paused "
                f"for {cooldown / 60:.0f} min; later models in the chain answer meanwhile. "
                f"Check providers.{entry.provider.name} in the config and its key.",
            )

    def _larger_window_ahead(self, index: int, turn: _Turn) -> bool:
        """After a ContextTooLong: is there a later entry with a larger known window?"""
        window = self.entries[index].context_window
        if window is None:
            return False
        if not any((e.context_window or 0) > window for e in self.entries[index + 1 :]):
            return False
        turn.min_window = window
        return True

    def _after_failure(self, index: int, turn: _Turn) -> int:
        """The entry to try next: the next one, or the primary again if waiting for it."""
        if self._primary_ready_in_time(index, turn):
            return index
        return index + 1

    def _primary_ready_in_time(self, index: int, turn: _Turn) -> bool:
        if not (self.policy.wait_for_primary and index == 0):
            return False
        ready_at = self._breakers[0].ready_at()
        return ready_at is not None and ready_at < turn.deadline

    async def _waited_for_primary(self, index: int, turn: _Turn) -> bool:
        """In wait_for_primary mode, sleep until a cooling primary may be probed."""
        if not self._primary_ready_in_time(index, turn):
            return False
        ready_at = self._breakers[0].ready_at()
        assert ready_at is not None
        await self._sleep(max(ready_at - self._clock(), 0.0))
        return True
