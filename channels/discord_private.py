"""Everything the Discord channel reads or sets inside discord.py, in one place.

The rest of the channel uses discord.py's public API only. What is here has no public
equivalent; each item says what Decapod needs it for. Checked against discord.py 2.5.0 and
2.7.1 (the installed version): the names and their meaning are the same in both.
pyproject.toml requires >= 2.5 (the interaction callback's message id, used by the send
path, arrived in 2.5).

1. The REST base and the first gateway URL. discord.py has no setting for either: they are
   class attributes (`http.Route.BASE`, `gateway.DiscordWebSocket.DEFAULT_GATEWAY`), so
   they hold for the whole process. They are set only while a channel configured with
   other URLs than Discord's runs (tests, a proxy), put back when the last one stops, and
   two channels that want different URLs in one process are a configuration error.
   Interaction webhooks (`discord.Webhook`) build their URLs from the same `Route.BASE`.
2. The dispatch parsers (`ConnectionState.parsers`). discord.py parses each dispatch
   inside its receive loop; an exception there (a missing key, a null payload) ends
   `Client.connect`. Wrapping each parser makes a malformed event cost that event only.
3. The heartbeat's last acknowledgement (`DiscordWebSocket._keep_alive._last_ack` and
   `.interval`) and the live socket (`Client.ws`), for the watchdog in
   channels/discord_connection.py: discord.py notices a connection that stopped
   acknowledging heartbeats only after 60 s without any frame at all, and never when some
   frames still arrive. No event or property reports the acknowledgement time. Closing
   that socket with code 4000 (`drop`) makes discord.py reconnect and RESUME, the same as
   after a network error.
4. An interaction from its raw payload (`discord.Interaction(data=..., state=...)` with the
   client's `ConnectionState`), for interactions mode: discord.py builds them only from
   gateway dispatches, and this is the object its own parser would have made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import discord
import discord.gateway
import discord.http
import yarl

from bot.channel_configs.discord import DISCORD_API, DISCORD_GATEWAY
from bot.errors import ConfigError

log = logging.getLogger("decapod.channels.discord")

#: channels that pointed discord.py elsewhere, and where (owner name -> (api, gateway))
_pointed: dict[str, tuple[str, str]] = {}


def point_at(owner: str, api_base: str, gateway_url: str) -> None:
    """Send this process's Discord traffic to `api_base` and `gateway_url` while `owner`
    runs. Discord's own URLs change nothing."""
    wanted = (api_base.rstrip("/"), gateway_url)
    if wanted == (DISCORD_API, DISCORD_GATEWAY) and not _pointed:
        return
    for other, urls in _pointed.items():
        if other != owner and urls != wanted:
            raise ConfigError(
                f"discord.py takes one API URL per process, and channel {other} uses {urls[0]}",
                f"channels.{owner}.api_base_url",
            )
    _pointed[owner] = wanted
    discord.http.Route.BASE = wanted[0]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(wanted[1])


def release(owner: str) -> None:
    """`owner` stopped: the last one to stop puts discord.py's defaults back."""
    if _pointed.pop(owner, None) is not None and not _pointed:
        discord.http.Route.BASE = DISCORD_API
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(DISCORD_GATEWAY)


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


def live_socket(client: discord.Client) -> Any:
    """The gateway connection discord.py is using now, or None."""
    return client.ws


def heartbeat(socket: Any) -> tuple[float, float] | None:
    """(perf_counter time of the last heartbeat ACK, heartbeat interval) of a connection;
    None before its heartbeat started."""
    keep_alive = getattr(socket, "_keep_alive", None)
    if keep_alive is None:
        return None
    return float(keep_alive._last_ack), float(keep_alive.interval or 0.0)


async def drop(socket: Any) -> None:
    """Close a connection so that discord.py reconnects and resumes (4000 is not a clean
    close: the session stays resumable)."""
    await socket.close(code=4000)


def interaction_from(client: discord.Client, data: Any) -> discord.Interaction[Any]:
    """An interaction that arrived over HTTP, as discord.py would build it from the gateway.
    Its `response` answers through the callback endpoint. Raises KeyError, TypeError or
    ValueError for a payload that lacks what discord.py reads."""
    return discord.Interaction(data=data, state=client._connection)
