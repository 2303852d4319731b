"""Keeping a Discord gateway connection honest.

discord.py reconnects and resumes when the socket closes, and its heartbeat thread gives up
on a connection only after `heartbeat_timeout` (60 s) in which *nothing at all* arrived. A
connection that still delivers some frames but no longer acknowledges heartbeats (a zombie,
in Discord's words) is never noticed, and one that goes silent takes a minute. Discord's
advice is to drop a connection whose heartbeat goes unacknowledged and resume; the
`HeartbeatWatchdog` does that within `window_s` of the first unanswered heartbeat.

`guard_parsers` makes a malformed dispatch cost one logged event instead of the connection:
discord.py parses each dispatch inside its receive loop, and an exception there (a missing
key, a null payload) would end `Client.connect`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import discord

log = logging.getLogger("decapod.channels.discord")

#: how often the watchdog looks, at most (it looks four times per window when that is shorter)
MAX_CHECK_PERIOD_S = 5.0


class HeartbeatWatchdog:
    def __init__(self, client: discord.Client, window_s: float) -> None:
        self.client = client
        self.window_s = window_s
        self.restarts = 0
        self._dropped: object | None = None  # the connection closed last, until it is replaced

    def ack_overdue_s(self) -> float | None:
        """Seconds since the first heartbeat that went unanswered (<= 0: none overdue);
        None while no connection is heartbeating."""
        keep_alive = self._keep_alive()
        if keep_alive is None:
            return None
        # discord.py's heartbeat thread records when it last got an ACK; the next heartbeat
        # is due one interval after that, so anything beyond it is unanswered time.
        last_ack: float = keep_alive._last_ack
        interval = float(keep_alive.interval or 0.0)
        return time.perf_counter() - last_ack - interval

    def _keep_alive(self) -> Any:
        ws = self.client.ws
        if ws is None or ws is self._dropped:
            return None
        return getattr(ws, "_keep_alive", None)

    async def check(self) -> bool:
        """Drop the connection if its heartbeats go unanswered; True if it was dropped."""
        overdue = self.ack_overdue_s()
        if overdue is None or overdue <= self.window_s:
            return False
        ws = self.client.ws
        log.warning(
            "Discord stopped acknowledging heartbeats %.1fs ago; reconnecting and resuming",
            overdue,
        )
        self._dropped = ws
        self.restarts += 1
        # 4000 is not a clean close: discord.py reconnects to the resume URL and sends RESUME
        await ws.close(code=4000)
        return True

    async def run(self) -> None:
        period = min(MAX_CHECK_PERIOD_S, self.window_s / 4)
        while not self.client.is_closed():
            await asyncio.sleep(period)
            try:
                await self.check()
            except Exception:
                log.exception("the Discord watchdog failed to restart the connection")


def guard_parsers(client: discord.Client, on_malformed: Callable[[str], None]) -> None:
    """Wrap each of discord.py's dispatch parsers so an exception skips the event."""
    parsers: dict[str, Callable[[Any], None]] = client._connection.parsers
    for event, parser in list(parsers.items()):
        parsers[event] = _guarded(event, parser, on_malformed)


def _guarded(
    event: str, parser: Callable[[Any], None], on_malformed: Callable[[str], None]
) -> Callable[[Any], None]:
    def parse(data: Any) -> None:
        try:
            parser(data)
        except Exception as exc:
            # the payload itself is not logged: it is a person's message
            log.warning("skipped a malformed %s dispatch (%s: %s)", event, type(exc).__name__, exc)
            on_malformed(event)

    return parse
