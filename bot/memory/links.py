"""Identity links: a short code made where a person is known joins another account to them,
with their memory. Codes are single use, expire, and wrong guesses are limited per person."""

from __future__ import annotations

import secrets
import time

from bot.errors import DecapodError
from bot.store.memory import MemoryRepo

LINK_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: easy to read and type
LINK_TTL_S = 600.0
_LINK_MAX_FAILURES = 5


class MemoryRequestError(DecapodError):
    """A memory request that cannot be done; the message is fit to show a person."""


class LinkCodes:
    def __init__(self, repo: MemoryRepo) -> None:
        self.repo = repo
        self._failures: dict[str, list[float]] = {}

    async def create(self, owner: str) -> str:
        code = "".join(secrets.choice(LINK_ALPHABET) for _ in range(8))
        await self.repo.put_link_code(code, owner, time.time() + LINK_TTL_S)
        return code

    async def redeem(self, owner: str, code: str) -> str:
        """Join `owner` to the one who made `code`; returns the person id both now share."""
        now = time.time()
        recent = [t for t in self._failures.get(owner, []) if now - t < LINK_TTL_S]
        if len(recent) >= _LINK_MAX_FAILURES:
            raise MemoryRequestError("Too many wrong codes. Try again in a few minutes.")
        normalized = "".join(c for c in code.upper() if c.isalnum())
        target = await self.repo.redeem_link_code(normalized, owner, now)
        if target is None:
            self._failures[owner] = [*recent, now]
            raise MemoryRequestError(
                "That code is unknown or has expired. Send /link where you are already known "
                "to get a new one."
            )
        self._failures.pop(owner, None)
        return target
