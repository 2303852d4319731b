"""Long polling that confirms to Telegram only what is stored.

Telegram forgets an update once `getUpdates` is called with a higher offset. PTB's Updater
moves the offset as soon as it fetches a batch, and on stop asks once more to mark all it
fetched as read, so a graceful stop loses what was queued in memory. Here the offset moves
past an update only after the sink call for it has returned (the gateway stores a delivery
before it returns), or when the update is dropped on purpose. Each batch is handed over one
update at a time in update_id order, whatever order it came in, and stops at the first that
cannot be stored, so "every id below the offset is stored" holds without a min-pending rule,
and messages of one chat keep their order. An id below the offset is skipped: it is stored.

That is what PTB's Updater cannot be told to do (it fills its `update_queue` and moves the
offset before any handler runs, to the last update of the batch + 1), so the loop is ours.

A crash after the sink returned but before the next `getUpdates` makes Telegram send the
update again; the gateway drops it as a duplicate by its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Bot
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError

from bot.errors import describe_error
from bot.redaction import scrub
from bot.tasks import cancel_and_wait

log = logging.getLogger("decapod.channels.telegram")

# PTB 22 is moving durations (RetryAfter.retry_after, Voice.duration) from int seconds to
# timedelta and warns on every use of the int form, even when it builds a RetryAfter itself.
# Opting in to the timedelta form is the documented way to silence that; only this adapter
# reads PTB objects.
os.environ.setdefault("PTB_TIMEDELTA", "true")

#: Telegram holds a long poll up to this; the HTTP read waits a little longer
READ_MARGIN_S = 10.0
_MAX_BACKOFF_S = 30.0


class RawUpdatesBot(Bot):
    async def get_raw_updates(
        self, offset: int | None, wait_s: float, allowed_updates: list[str], limit: int = 100
    ) -> list[Any]:
        # Bot.get_updates parses the whole batch at once, so one update it cannot parse would
        # stall polling for good; raw dicts let each update fail on its own.
        data = {
            "offset": offset,
            "timeout": wait_s,
            "limit": limit,
            "allowed_updates": allowed_updates,
        }
        result = await self._post("getUpdates", data, read_timeout=wait_s + READ_MARGIN_S)
        return list(result) if isinstance(result, list) else []


def retry_after_seconds(exc: RetryAfter) -> float:
    value = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


def describe(exc: BaseException) -> str:
    """An exception as one log-safe line: its type and its redacted message."""
    return scrub(describe_error(exc))


class _Stopped(Exception):
    pass


class UpdatePoller:
    def __init__(
        self,
        bot: RawUpdatesBot,
        handle: Callable[[Any], Awaitable[None]],
        stopping: asyncio.Event,
        *,
        timeout_s: float,
        allowed_updates: list[str],
    ) -> None:
        self.bot = bot
        #: stores or drops one raw update; raising means "not stored, ask again later"
        self.handle = handle
        self.stopping = stopping
        self.timeout_s = timeout_s
        self.allowed_updates = allowed_updates
        #: the next offset: every update below it is stored or was dropped on purpose
        self.offset: int | None = None
        #: the offset Telegram has been told
        self.confirmed: int | None = None
        self.last_ok: float | None = None

    async def run(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                batch = await self._fetch()
            except _Stopped:
                return
            except RetryAfter as exc:
                await self._pause(retry_after_seconds(exc))
                continue
            except TelegramError as exc:
                level = (
                    logging.ERROR if isinstance(exc, InvalidToken | Conflict) else logging.WARNING
                )
                hint = " (another process polls with this token, or a webhook is set)"
                log.log(
                    level,
                    "telegram getUpdates failed: %s%s; retrying in %.0fs",
                    describe(exc),
                    hint if isinstance(exc, Conflict) else "",
                    backoff,
                )
                await self._pause(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            self.last_ok = time.monotonic()
            if await self._deliver(batch):
                backoff = 1.0
            else:
                await self._pause(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)

    async def _deliver(self, batch: list[Any]) -> bool:
        """Hand the batch over in update_id order; False when the sink failed (asked again
        later, from the update that failed)."""
        updates: list[tuple[int, Any]] = []
        for raw in batch:
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            if not isinstance(update_id, int) or isinstance(update_id, bool):
                log.warning("telegram sent an update without an id; skipped: %s", excerpt(raw))
                continue
            updates.append((update_id, raw))
        updates.sort(key=lambda update: update[0])
        for update_id, raw in updates:
            if self.stopping.is_set():
                return True
            if self.offset is not None and update_id < self.offset:
                continue  # stored already (a batch that repeats an id)
            try:
                await self.handle(raw)
            except Exception as exc:
                log.error("could not store telegram update %s: %s", update_id, describe(exc))
                return False
            self.offset = update_id + 1
        return True

    async def _fetch(self) -> list[Any]:
        request = asyncio.ensure_future(
            self.bot.get_raw_updates(self.offset, self.timeout_s, self.allowed_updates)
        )
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({request, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not request.done():
            with contextlib.suppress(TelegramError):
                await cancel_and_wait(request)
            raise _Stopped
        batch = request.result()
        self.confirmed = self.offset
        return batch

    async def _pause(self, seconds: float) -> None:
        await sleep_unless(self.stopping, seconds)

    async def confirm(self) -> None:
        """Tell Telegram about everything stored since the last request, and nothing more."""
        if self.offset is None or self.offset == self.confirmed:
            return
        try:
            await self.bot.get_raw_updates(self.offset, 0, self.allowed_updates, limit=1)
            self.confirmed = self.offset
        except TelegramError as exc:
            log.info(
                "telegram: could not confirm stored updates (%s); they come again and are "
                "dropped as duplicates",
                describe(exc),
            )


async def sleep_unless(event: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less once `event` is set. asyncio.timeout, not wait_for: on Python
    3.11 wait_for returns normally when it is cancelled just as the event is set, and the
    cancellation of the loop around it is lost."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


async def first_of(*events: asyncio.Event) -> None:
    """Wait until any of `events` is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def excerpt(raw: Any, limit: int = 300) -> str:
    text = repr(raw)
    return scrub(text if len(text) <= limit else text[:limit] + "…")
