"""How one request of web_fetch leaves: straight to the host (the session's resolver checks
every address it connects to), or through the environment's proxy (HTTPS_PROXY, HTTP_PROXY
and NO_PROXY, found as the gateway's other sessions find them: `ProxyLookup`).

A proxy resolves the name itself, where the address guard cannot see it, and reaches what
the gateway can: a page on the local network, a cloud metadata address. So through a proxy
the name is resolved and checked here, and the proxy is asked for a tunnel (CONNECT) to
that checked address: a proxy tunnels to the address on the request line, so a name that
resolves elsewhere the second time (DNS rebinding) cannot move the request. The name is
not hidden from the proxy: aiohttp puts it in the CONNECT's Host header. Inside the tunnel
it goes in the Host header and in TLS (SNI and the certificate check). A plain
http:// page is refused when a proxy applies: a proxy takes Host from the request line
(RFC 9112), which would name the address, and answer with the address's default site
rather than the page. An address that the proxy cannot reach (an IPv6 one through a proxy
with IPv4 only) gives way to the next the name resolved to.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from bot.proxy_env import ProxyLookup
from bot.web.guard import AddressGuard, FetchRefused, GuardedResolver, parse_host_literal


@dataclass(frozen=True, slots=True)
class Route:
    session: aiohttp.ClientSession
    #: what is asked for: the page's URL, or through a proxy the same at each checked
    #: address, in the order to try them
    urls: tuple[URL, ...]
    proxy: URL | None = None
    #: the page's host[:port] for the Host header, when `urls` name the addresses
    host_header: str | None = None
    #: the name TLS is started for and checks the certificate against, likewise
    server_hostname: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.host_header is None else {"Host": self.host_header}


class ProxyRoutes:
    """The route of each request: direct on the guarded session, or through the proxy the
    environment names for the page's address, on a session of its own (it connects to the
    proxy only, which the guard does not judge: the operator set it)."""

    def __init__(
        self,
        direct: aiohttp.ClientSession,
        guard: AddressGuard,
        resolver: AbstractResolver,
        open_proxied: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self.direct = direct
        self._resolver = GuardedResolver(guard, resolver)
        self._open_proxied = open_proxied
        #: made with the first request through a proxy (most gateways have none)
        self._proxied: aiohttp.ClientSession | None = None
        self._proxies = ProxyLookup()

    async def route(self, target: URL) -> Route:
        proxy = await self._proxies.for_url(target)
        if proxy is None:
            return Route(self.direct, (target,))
        if target.scheme != "https":
            raise FetchRefused(
                f"refused: {target} is plain http, and the environment names a proxy for "
                "it; through a proxy only https:// pages are fetched (use https://)"
            )
        addresses = await self._checked_addresses(target)
        if self._proxied is None:
            self._proxied = self._open_proxied()
        return Route(
            self._proxied,
            tuple(target.with_host(address) for address in addresses),
            proxy,
            host_header=target.raw_authority,
            # punycode, as the direct path sends it; a name's final dot is no name for TLS
            server_hostname=(target.raw_host or "").rstrip("."),
        )

    async def _checked_addresses(self, target: URL) -> list[str]:
        host = target.raw_host or ""
        literal = parse_host_literal(host)
        if literal is not None:  # already checked by `Fetcher.check_url`
            return [str(literal)]
        try:  # the guarded resolver refuses the name unless every address passes
            found = await self._resolver.resolve(host, target.port or 0, socket.AF_UNSPEC)
        except OSError as exc:
            raise FetchRefused(f"{host} could not be resolved ({exc})") from None
        return list(dict.fromkeys(r["host"] for r in found))

    async def close(self) -> None:
        if self._proxied is not None:
            await self._proxied.close()


def described(exc: aiohttp.ClientError) -> str:
    """`exc` in words for the model and the log. A proxy's refusal (ClientHttpProxyError)
    names the proxy's URL, with its password, in its text: only its status is said."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return f"the proxy refused ({exc.status} {exc.message})"
    return str(exc) or type(exc).__name__
