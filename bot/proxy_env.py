"""The proxy variables of the environment, checked once for every aiohttp session that
takes them (the platforms' requests, the models' streams, remote embeddings), and looked up
once per address (`ProxyLookup`).

aiohttp takes HTTPS_PROXY, HTTP_PROXY and NO_PROXY from the environment, as httpx does, but
only http:// proxies: it ignores an https:// one (and connects directly, around it) and fails
every request through one written without a scheme. It also parses WS_PROXY and WSS_PROXY
at every lookup, for any address, and one it cannot parse fails every request.
`check_proxy_env` refuses such a variable at the start, naming it, rather than requests that
fail one by one or leave unproxied.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bot.errors import ConfigError

if TYPE_CHECKING:
    from yarl import URL

#: addresses a lookup remembers: web_fetch asks for any address a chat names
_REMEMBERED = 1024


def check_proxy_env(environ: Mapping[str, str] = os.environ) -> None:
    """ConfigError for a proxy variable the sessions cannot use. The value is not shown: it
    may hold the proxy's password."""
    for name, value in environ.items():
        kind = name.lower()
        if kind not in ("http_proxy", "https_proxy", "ws_proxy", "wss_proxy") or not value:
            continue
        scheme, found, _ = value.partition("://")
        if kind in ("ws_proxy", "wss_proxy"):  # never used for a request, only parsed
            if _parses(value):
                continue
            problem = "is not a valid URL; write it as http://host:port"
        elif not found:
            problem = "has no scheme; write it as http://host:port"
        elif scheme.lower() != "http":
            problem = (
                f"is a {scheme.lower()}:// proxy; Decapod's requests go through http:// "
                "proxies only (give the proxy's http:// address)"
            )
        else:
            try:
                parts = urlsplit(value)
                parts.port  # noqa: B018  (reading it raises for a port that is not a number)
                valid = bool(parts.hostname)
            except ValueError:  # a bracket left open, a port that is not a number
                valid = False
            if valid:
                continue
            problem = "is not a valid URL; write it as http://host:port"
        raise ConfigError(f"the environment variable {name} {problem}")


def _parses(value: str) -> bool:
    """Whether aiohttp can read the proxy URL `value`, as it reads WS_PROXY and WSS_PROXY."""
    from yarl import URL

    try:
        URL(value).host  # noqa: B018  (parsed as it is made; then its host, as aiohttp reads)
    except ValueError:
        return False
    return True


def proxy_for(url: str) -> str | None:
    """The proxy of the environment for `url`, with its credentials (None: connect directly),
    for a client that takes one proxy rather than the environment, as discord.py does. Found
    as `ProxyLookup` finds it; a ws:// or wss:// URL goes through the proxy of its http://
    or https:// twin, as the websocket's CONNECT does."""
    from yarl import URL

    target = URL(url)
    scheme = {"ws": "http", "wss": "https"}.get(target.scheme, target.scheme)
    proxy = _environment_proxy(target.with_scheme(scheme).origin())
    return None if proxy is None else str(proxy)


class ProxyLookup:
    """The environment's proxy and its credentials for each address (scheme, host and port)
    a session sends to, as aiohttp's `trust_env` finds them, but once per address rather than
    in two worker-thread round trips per request (one for the proxy, one for ~/.netrc): for
    a session that sends every chat message, a third of a message's CPU under load. Pass the
    result as `proxy=` to a session made with `trust_env=False`.

    The proxy's credentials (from its URL or ~/.netrc) ride in the URL it returns: aiohttp
    3.14 deprecates `proxy_auth=` (a warning on every request, and gone in v4), and the
    `proxy_headers=` it suggests instead are sent only on an https:// request's CONNECT, not
    with a plain http:// request, which would reach the proxy without them. From the
    proxy's URL aiohttp sends them to the proxy either way, and never to the server.

    By address, not by URL: Telegram's URLs name the method and file paths, so a cache of
    URLs would grow without end (and at most `_REMEMBERED` addresses are kept, for web_fetch,
    which goes wherever a chat says). A variable changed after the first request to an address
    is not seen, as with an SDK's client that reads the environment once."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._found: dict[URL, asyncio.Future[URL | None]] = {}

    async def for_url(self, url: str | URL) -> URL | None:
        """The proxy for `url`, with its credentials, or None to connect directly. A burst of
        first requests to an address waits for the one lookup, which a cancelled request
        leaves running for the others; a lookup that failed is made again next time."""
        from yarl import URL

        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a future belongs to the loop that made it
            self._loop, self._found = loop, {}
        origin = URL(url).origin()
        found = self._found.get(origin)
        if found is None:  # off the loop: it may read ~/.netrc for the proxy's credentials
            if len(self._found) >= _REMEMBERED:  # the oldest goes; its waiters hold it
                del self._found[next(iter(self._found))]
            found = asyncio.ensure_future(asyncio.to_thread(_environment_proxy, origin))
            found.add_done_callback(lambda done: self._forget_failed(origin, done))
            self._found[origin] = found
        if found.done():
            return found.result()
        return await asyncio.shield(found)

    def _forget_failed(self, origin: URL, done: asyncio.Future[URL | None]) -> None:
        if (done.cancelled() or done.exception() is not None) and self._found.get(origin) is done:
            del self._found[origin]


def _environment_proxy(origin: URL) -> URL | None:
    from aiohttp.helpers import get_env_proxy_for_url

    try:
        proxy, credentials = get_env_proxy_for_url(origin)
    except LookupError:  # no proxy for this scheme, or NO_PROXY names the host
        return None
    if credentials is None:
        return proxy
    return proxy.with_user(credentials.login).with_password(credentials.password)
