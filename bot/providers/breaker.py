"""A circuit breaker per chain entry (provider + model), and the board that holds them all.

The board is long-lived and shared by every chain built from one config, so what one turn
learns (a 429, a dead key, a server down) holds for the next turn and for other purposes that
use the same model.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypedDict

from bot.providers.recent_errors import RecentErrors

log = logging.getLogger(__name__)

Notify = Callable[[str], Awaitable[None]]

#: failure classes a health probe can observe as well as a turn can
PROBE_VISIBLE_ERRORS = frozenset({"connection", "timeout", "server"})
#: how long closing waits for owner notices still being sent
NOTICE_GRACE_S = 5.0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failure_threshold: int = 5
    failure_rate_threshold: float = 0.5
    failure_rate_window_s: float = 60.0
    failure_rate_min_calls: int = 10
    base_cooldown_s: float = 30.0
    max_cooldown_s: float = 600.0


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to call an entry once; a probe is the single call let through after a cooldown."""

    probe: bool


class EntryState(TypedDict):
    """One chain entry, for /health and `decapod providers status` (JSON-ready)."""

    name: str
    state: str  # a BreakerState value
    cooldown_remaining_s: float
    consecutive_failures: int
    last_error: str | None


class Breaker:
    def __init__(self, settings: BreakerSettings, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._open_until = 0.0
        self._last_open_s = 0.0
        self._probing = False
        self._outcomes: deque[tuple[float, bool]] = deque()
        self.consecutive_failures = 0
        self.last_error: str | None = None

    def try_acquire(self) -> Permit | None:
        """A permit to call now, or None while open (or while another call is the probe)."""
        if self._state is BreakerState.CLOSED:
            return Permit(probe=False)
        if self._probing or self._clock() < self._open_until:
            return None
        # Synchronous from check to set: of concurrent turns, exactly one gets the probe.
        self._probing = True
        self._state = BreakerState.HALF_OPEN
        return Permit(probe=True)

    def ready_at(self) -> float | None:
        """When an open breaker lets its probe through; None if closed or already probing."""
        if self._state is BreakerState.CLOSED or self._probing:
            return None
        return self._open_until

    def record_success(self) -> None:
        self._record(ok=True)
        self._probing = False
        self._state = BreakerState.CLOSED
        self._last_open_s = 0.0
        self.consecutive_failures = 0

    def record_failure(self, permit: Permit, error: str, cooldown_s: float | None = None) -> None:
        """One failed call. `cooldown_s` opens the breaker at once for that long (a 429's
        Retry-After, a refused key); otherwise it opens on the thresholds."""
        self._record(ok=False)
        self.consecutive_failures += 1
        self.last_error = error
        settings = self._settings
        if permit.probe:
            self._probing = False
        if cooldown_s is not None:
            self._open(cooldown_s)
        elif permit.probe:
            doubled = max(self._last_open_s * 2, settings.base_cooldown_s)
            self._open(min(doubled, settings.max_cooldown_s))
        elif self._state is BreakerState.CLOSED and self._tripped():
            self._open(settings.base_cooldown_s)

    def release(self, permit: Permit) -> None:
        """A call that ended with no verdict (the caller stopped reading): free the probe."""
        if permit.probe:
            self._probing = False
            self._state = BreakerState.OPEN

    def force_open(self, error: str, cooldown_s: float) -> None:
        """Open without a call, e.g. when a health probe finds the server down."""
        self.last_error = error
        if self._state is BreakerState.CLOSED:
            self._open(cooldown_s)

    def force_close(self) -> None:
        """Close without a call, e.g. when a health probe finds the server back."""
        if not self._probing:
            self._state = BreakerState.CLOSED
            self._last_open_s = 0.0
            self.consecutive_failures = 0

    def snapshot(self, name: str) -> EntryState:
        now = self._clock()
        if self._state is BreakerState.OPEN and now >= self._open_until:
            state = BreakerState.HALF_OPEN  # cooled down: the next call is the probe
        else:
            state = self._state
        remaining = max(self._open_until - now, 0.0) if state is BreakerState.OPEN else 0.0
        return EntryState(
            name=name,
            state=state.value,
            cooldown_remaining_s=round(remaining, 3),
            consecutive_failures=self.consecutive_failures,
            last_error=self.last_error,
        )

    def _open(self, seconds: float) -> None:
        until = self._clock() + seconds
        if self._state is BreakerState.OPEN:
            # A late failure of a call let through before the breaker opened never shortens
            # the cooldown already set (a 429's 5 s after a refused key's 10 min).
            until = max(until, self._open_until)
        self._state = BreakerState.OPEN
        self._open_until = until
        self._last_open_s = seconds

    def _record(self, *, ok: bool) -> None:
        now = self._clock()
        self._outcomes.append((now, ok))
        horizon = now - self._settings.failure_rate_window_s
        while self._outcomes and self._outcomes[0][0] < horizon:
            self._outcomes.popleft()

    def _tripped(self) -> bool:
        settings = self._settings
        if self.consecutive_failures >= settings.failure_threshold:
            return True
        calls = len(self._outcomes)
        if calls < settings.failure_rate_min_calls:
            return False
        failures = sum(1 for _, ok in self._outcomes if not ok)
        return failures / calls >= settings.failure_rate_threshold


@dataclass(frozen=True, slots=True)
class FailoverStats:
    """Plain counters since start-up, for /metrics."""

    calls: int
    successes: int
    failovers: int
    interrupted: int
    all_failed: int
    skipped_open: int
    errors: dict[str, int] = field(default_factory=dict)


class BreakerBoard:
    """Breakers by entry name, owner notices (once per outage), and the counters."""

    def __init__(
        self,
        settings: BreakerSettings | None = None,
        *,
        clock: Callable[[], float],
        notify: Notify | None = None,
    ) -> None:
        self.settings = settings or BreakerSettings()
        self.clock = clock
        self._notify = notify
        self._breakers: dict[str, Breaker] = {}
        self._providers: dict[str, str] = {}  # entry name -> provider name
        self._notified: set[tuple[str, str]] = set()
        self._notices: set[asyncio.Task[None]] = set()
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        #: the last failures of each entry, for the control panel
        self.recent = RecentErrors()

    def breaker(self, entry: str, provider: str) -> Breaker:
        found = self._breakers.get(entry)
        if found is None:
            found = self._breakers[entry] = Breaker(self.settings, self.clock)
            self._providers[entry] = provider
        return found

    def state(self, entries: list[str] | None = None) -> list[EntryState]:
        names = self._breakers if entries is None else entries
        return [self._breakers[name].snapshot(name) for name in names]

    def stats(self) -> FailoverStats:
        return FailoverStats(
            calls=self.counts["calls"],
            successes=self.counts["successes"],
            failovers=self.counts["failovers"],
            interrupted=self.counts["interrupted"],
            all_failed=self.counts["all_failed"],
            skipped_open=self.counts["skipped_open"],
            errors=dict(self.errors),
        )

    def recovered(self, provider: str) -> None:
        """A provider answered: a later outage of it is news again."""
        self._notified = {key for key in self._notified if key[0] != provider}

    def notify_once(self, provider: str, kind: str, message: str) -> None:
        """Tell the owner, once per (provider, kind) until the provider answers again."""
        if (provider, kind) in self._notified:
            return
        self._notified.add((provider, kind))
        from bot.security.redact import scrub

        # it quotes the provider's error, which may quote the key it refused; the notice
        # leaves the machine through a chat platform
        message = scrub(message)
        log.error("%s", message)
        if self._notify is None:
            return
        # In the background: a slow channel must not hold up the turn that is failing over.
        task = asyncio.create_task(self._send(message), name=f"provider-notice-{provider}")
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _send(self, message: str) -> None:
        assert self._notify is not None
        try:
            await self._notify(message)
        except Exception:
            log.exception("could not notify the owner about a provider outage")

    def probe_result(self, provider: str, error: str | None, cooldown_s: float) -> None:
        """A health probe of a provider (`error`: the failure class, or None if it answered).

        An outage the probe can see (no connection, a timeout, a 5xx) opens the provider's
        entries for `cooldown_s` (until the next probe), so turns skip them instead of waiting;
        an answer closes entries that were open for such an outage. A refused key or a 429 is
        left to its own cooldown.
        """
        for entry, owner in self._providers.items():
            if owner != provider:
                continue
            breaker = self._breakers[entry]
            if error in PROBE_VISIBLE_ERRORS:
                breaker.force_open(error, cooldown_s)
            elif error is None and breaker.last_error in PROBE_VISIBLE_ERRORS:
                breaker.force_close()

    async def aclose(self) -> None:
        """Let owner notices in flight finish (briefly), then drop them."""
        if not self._notices:
            return
        _, pending = await asyncio.wait(set(self._notices), timeout=NOTICE_GRACE_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
