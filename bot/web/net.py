"""How the web tools reach the network: one place builds their HTTP sessions.

`Network` is the seam: the resolver names go through, the factory that makes sockets, and
the certificates trusted. Production uses the system's; the tests swap in a resolver they
control, a socket factory that refuses anything but 127.0.0.1 (a broken guard fails a test
instead of sending traffic anywhere) and their own certificate authority.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from bot.web.guard import AddressGuard, GuardedResolver
from bot.web.route import ProxyRoutes

SocketFactory = Callable[[Any], socket.socket]


@dataclass(frozen=True, slots=True)
class Network:
    resolver: Callable[[], AbstractResolver]
    socket_factory: SocketFactory | None = None
    #: the TLS context certificates are checked with (None: the system's)
    tls: ssl.SSLContext | None = None


def system_network() -> Network:
    return Network(resolver=aiohttp.ThreadedResolver)


def open_session(
    network: Network, *, user_agent: str, guard: AddressGuard | None = None
) -> aiohttp.ClientSession:
    """A session with no cookie jar (one person's cookies must never reach another's fetch),
    no proxy from the environment, and, with a guard, only checked addresses to connect to."""
    resolver: AbstractResolver = network.resolver()
    if guard is not None:
        resolver = GuardedResolver(guard, resolver)
    connector = aiohttp.TCPConnector(
        resolver=resolver,
        socket_factory=network.socket_factory,
        ssl=network.tls or True,
        limit=32,
        limit_per_host=4,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        headers={"User-Agent": user_agent},
    )


def proxy_routes(
    network: Network, direct: aiohttp.ClientSession, guard: AddressGuard, *, user_agent: str
) -> ProxyRoutes:
    """web_fetch's way through the environment's proxy: the page's name resolved on this
    network and checked by `guard`, then asked of the proxy by its address, on a session
    of its own (made with the first such request)."""
    return ProxyRoutes(
        direct, guard, network.resolver(), lambda: open_session(network, user_agent=user_agent)
    )
