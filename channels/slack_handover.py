"""Handing Slack deliveries to the gateway's inbox: once each, within Slack's ack budget.

Store, then acknowledge: a delivery is acknowledged when the inbox has stored it, so an inbox
that fails fast leaves it unacknowledged and Slack's retry is processed. Slack allows 3 s,
though, so past `budget_s` the delivery is acknowledged anyway and the inbox write goes on;
Slack will not send it again, so from then on a failed write is tried again here until it is
stored (or the channel stops).

slack-bolt has no such middle: its `process_before_response=True` acknowledges only when the
listener returns (an inbox slower than 3 s earns Slack's retries, and with enough failures
Slack turns the app's events off), and `False` acknowledges before the listener runs (a
failed write is then lost). Bolt has no dedupe of retries either; `RecentDeliveries` drops
repeats here, and the gateway's inbox, keyed by event id, drops the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from channels.slack_inbound import RecentDeliveries

log = logging.getLogger("decapod.channels.slack")

Store = Callable[[], Coroutine[Any, Any, None]]
#: seconds between the tries of an acknowledged delivery the inbox failed to take
LATE_RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)


class Handover:
    def __init__(self, channel: str, budget_s: float) -> None:
        self.channel = channel
        self.budget_s = budget_s
        self.recent = RecentDeliveries()
        self._late: dict[asyncio.Task[None], str] = {}  # inbox writes still going after an ack

    def deadline(self, received_at: float | None = None) -> float:
        """The loop time by which a delivery received at `received_at` (loop time; default
        now) must be acknowledged."""
        if received_at is None:
            received_at = asyncio.get_running_loop().time()
        return received_at + self.budget_s

    async def deliver(self, what: str, keys: Sequence[str], store: Store, deadline: float) -> None:
        """Store one delivery unless one of its `keys` was stored before. Returns when it is
        stored, or at `deadline` with the write still going; raises when the write failed
        before the deadline (the delivery is then not acknowledged, and Slack retries)."""
        if not await self.recent.claim(keys):
            log.debug("slack %s: dropped a repeated delivery of %s", self.channel, what)
            return
        handed_on = False
        try:
            await self._within(what, store, deadline)
            handed_on = True
        finally:
            self.recent.settle(keys, handed_on)

    async def _within(self, what: str, store: Store, deadline: float) -> None:
        first = asyncio.create_task(store())
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.shield(first)
            return
        except TimeoutError:
            if first.done():
                first.result()  # the write's own error, or it made it just in time
                return
            log.warning("slack %s: acknowledged %s before the inbox took it", self.channel, what)
        except asyncio.CancelledError:
            # the listener was cancelled, not the delivery: the write goes on
            self._keep(what, first, store)
            raise
        self._keep(what, first, store)

    def _keep(self, what: str, first: asyncio.Task[None], store: Store) -> None:
        task = asyncio.create_task(self._finish(what, first, store))
        self._late[task] = what
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._late.pop(task, None)

    async def _finish(self, what: str, first: asyncio.Task[None], store: Store) -> None:
        attempt: Awaitable[None] = first
        for delay in (*LATE_RETRY_DELAYS_S, None):
            try:
                await attempt
                return
            except Exception as exc:
                if delay is None:
                    log.error(
                        "slack %s: %s was acknowledged but the inbox never took it: %r",
                        self.channel,
                        what,
                        exc,
                    )
                    return
                log.warning(
                    "slack %s: the inbox failed to take %s after its ack (%r); again in %gs",
                    self.channel,
                    what,
                    exc,
                    delay,
                )
            await asyncio.sleep(delay)
            attempt = store()

    async def close(self, grace_s: float) -> None:
        """Give the writes still going `grace_s` to finish; the rest are given up, loudly."""
        if not self._late:
            return
        _, pending = await asyncio.wait(list(self._late), timeout=grace_s)
        for task in pending:
            log.error(
                "slack %s: stopped before the inbox took %s; it is lost",
                self.channel,
                self._late.get(task),
            )
            task.cancel()
        if pending:
            await asyncio.wait(pending)
