"""Keeping a Discord gateway connection honest.

discord.py reconnects and resumes when the socket closes, and its heartbeat thread gives up
on a connection only after `heartbeat_timeout` (60 s) in which *nothing at all* arrived. A
connection that still delivers some frames but no longer acknowledges heartbeats (a zombie,
in Discord's words) is never noticed, and one that goes silent takes a minute. Discord's
advice is to drop a connection whose heartbeat goes unacknowledged and resume; the
`HeartbeatWatchdog` does that within `window_s` of the first unanswered heartbeat. discord.py
offers no hook for this, so the watchdog reads the acknowledgement time through
channels/discord_private.py.
"""

from __future__ import annotations

import asyncio
import logging
import time

import discord

from channels import discord_private

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
        socket = discord_private.live_socket(self.client)
        if socket is None or socket is self._dropped:
            return None
        beat = discord_private.heartbeat(socket)
        if beat is None:
            return None
        # the next heartbeat is due one interval after the last ACK; beyond it is unanswered
        last_ack, interval = beat
        return time.perf_counter() - last_ack - interval

    async def check(self) -> bool:
        """Drop the connection if its heartbeats go unanswered; True if it was dropped."""
        overdue = self.ack_overdue_s()
        if overdue is None or overdue <= self.window_s:
            return False
        socket = discord_private.live_socket(self.client)
        log.warning(
            "Discord stopped acknowledging heartbeats %.1fs ago; reconnecting and resuming",
            overdue,
        )
        self._dropped = socket
        self.restarts += 1
        await discord_private.drop(socket)
        return True

    async def run(self) -> None:
        period = min(MAX_CHECK_PERIOD_S, self.window_s / 4)
        while not self.client.is_closed():
            await asyncio.sleep(period)
            try:
                await self.check()
            except Exception:
                log.exception("the Discord watchdog failed to restart the connection")
