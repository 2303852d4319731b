"""Keeping a Discord gateway connection honest.

discord.py reconnects and resumes when the socket closes, and its heartbeat thread gives up
on a connection only after `heartbeat_timeout` (60 s) in which *nothing at all* arrived. A
connection that still delivers some frames but no longer acknowledges heartbeats (a zombie,
in Discord's words) is never noticed, and one that goes silent takes a minute. Discord's
advice is to drop a connection whose heartbeat goes unacknowledged and resume; the
`HeartbeatWatchdog` does that within `window_s` of the first unanswered heartbeat. discord.py
offers no hook for this, so the watchdog reads the acknowledgement time through
channels/discord_private.py. `run_gateway` keeps a connection open until the client closes
or its task is cancelled (a replica that stops leading, bot/cluster/leader.py).
`ChannelClient` is the connection's client: its events (messages, connects, resumes,
disconnects, button presses) go to the DiscordChannel; `make_client` sets its intents and
limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import discord

from bot.proxy_env import proxy_for
from channels import discord_private
from channels.discord_outbound import allowed_mentions

if TYPE_CHECKING:
    from bot.channel_configs.discord import DiscordChannelConfig
    from channels.discord import DiscordChannel

log = logging.getLogger("decapod.channels.discord")

#: after an unexpected gateway failure: the first wait before a new connection, and the cap
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 60.0
#: how often the watchdog looks, at most (it looks four times per window when that is shorter)
MAX_CHECK_PERIOD_S = 5.0
#: discord.py fires on_ready this long after the last GUILD_CREATE; we never wait for it
GUILD_READY_TIMEOUT_S = 0.1
#: a 429 asking for a longer wait than this surfaces as RateLimited (discord.py's minimum)
MAX_RATELIMIT_WAIT_S = 30.0


class ChannelClient(discord.Client):
    """discord.py's client, whose connection events and messages go to the channel."""

    def __init__(self, channel: DiscordChannel, **options: Any) -> None:
        super().__init__(**options)
        self.channel = channel

    async def on_message(self, message: discord.Message) -> None:
        self.channel.on_message(message)

    async def on_connect(self) -> None:
        self.channel.on_connected()

    async def on_resumed(self) -> None:
        self.channel.on_connected()

    async def on_disconnect(self) -> None:
        self.channel.on_disconnected()

    async def on_press(self, interaction: discord.Interaction, token: str) -> None:
        await self.channel.on_press(interaction, token)


def make_client(channel: DiscordChannel, config: DiscordChannelConfig) -> ChannelClient:
    intents = discord.Intents.none()
    intents.guilds = True  # channels and threads
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = config.message_content_intent
    return ChannelClient(
        channel,
        intents=intents,
        allowed_mentions=allowed_mentions(config.allowed_mentions),
        max_messages=None,  # no message cache: replies carry the message they answer
        guild_ready_timeout=GUILD_READY_TIMEOUT_S,
        max_ratelimit_timeout=MAX_RATELIMIT_WAIT_S,
        # discord.py takes one proxy for its REST calls and its gateway, not the environment's
        proxy=proxy_for(config.api_base_url),
    )


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


async def run_gateway(name: str, client: discord.Client, connected: asyncio.Event) -> None:
    """discord.py's connect loop reconnects and resumes by itself. What escapes it is
    either final (a rejected token or intents: said once, clearly) or an error in its
    receive loop (a frame that is not JSON), after which a new connection is made."""
    failures = 0
    while not client.is_closed():
        try:
            await client.connect(reconnect=True)
        except discord.PrivilegedIntentsRequired:
            log.error(
                "Discord %s: the Message Content intent is not enabled for this bot. Turn it "
                "on (Developer Portal > Bot > Privileged Gateway Intents) or set "
                "message_content_intent = false",
                name,
            )
            return
        except discord.ConnectionClosed as exc:
            log.error("Discord %s: the gateway closed for good (code %s)", name, exc.code)
            return
        except Exception:
            failures += 1
            delay = min(RESTART_MAX_S, RESTART_FIRST_S * 2 ** (failures - 1))
            log.exception(
                "Discord %s: the gateway connection failed; new one in %.0fs", name, delay
            )
            socket = discord_private.live_socket(client)
            if socket is not None:
                with contextlib.suppress(Exception):
                    await discord_private.drop(socket)
            await asyncio.sleep(delay)
        finally:
            connected.clear()
