"""The last few failures of each chain entry, for the control panel: when, what kind, the HTTP
status, and a short message with secrets scrubbed. Kept in memory (a restart forgets them, as
it resets the breakers they explain); the counters in /metrics keep the totals."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from bot.errors import ProviderHTTPError

#: failures kept per entry
KEEP_PER_ENTRY = 20
_MAX_MESSAGE = 240


@dataclass(frozen=True, slots=True)
class ProviderFailure:
    at: float  # wall-clock time
    kind: str  # the failover classification (rate_limit, auth, timeout, ...)
    status: int | None
    message: str  # scrubbed and cut short


class RecentErrors:
    def __init__(self, keep: int = KEEP_PER_ENTRY) -> None:
        self.keep = keep
        self._by_entry: dict[str, deque[ProviderFailure]] = {}

    def add(self, entry: str, kind: str, exc: BaseException) -> None:
        from bot.security.redact import scrub

        text = " ".join(str(exc).split()) or type(exc).__name__
        if len(text) > _MAX_MESSAGE:
            text = text[: _MAX_MESSAGE - 1] + "…"
        status = exc.status if isinstance(exc, ProviderHTTPError) else None
        failures = self._by_entry.setdefault(entry, deque(maxlen=self.keep))
        failures.append(ProviderFailure(time.time(), kind, status, scrub(text)))

    def of(self, entry: str) -> list[ProviderFailure]:
        """Newest first."""
        return list(reversed(self._by_entry.get(entry, ())))

    def entries(self) -> list[str]:
        return sorted(self._by_entry)
