"""One HTTP(S) GET, safely: URL checks, redirects followed by hand (each hop checked
again, and routed again: direct or through the environment's proxy, bot/web/route.py), a
byte cap, and one deadline for the whole chain."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from yarl import URL

from bot.errors import ToolError
from bot.web.config import WebConfig
from bot.web.guard import AddressGuard, FetchRefused, parse_host_literal
from bot.web.route import ProxyRoutes, Route, described

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ACCEPT = (
    "text/html,application/xhtml+xml,application/json;q=0.9,text/plain;q=0.9,"
    "application/pdf;q=0.8,*/*;q=0.5"
)
_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class Fetched:
    #: where the content came from, after redirects
    url: str
    status: int
    #: the media type, lower case, without parameters ("" when the server sent none)
    mime: str
    charset: str | None
    body: bytes
    #: the body was longer than the cap and was cut there
    truncated: bool


class Fetcher:
    def __init__(
        self,
        config: WebConfig,
        session: aiohttp.ClientSession,
        guard: AddressGuard,
        routes: ProxyRoutes | None = None,
    ):
        self.config = config
        self.session = session
        self.guard = guard
        #: the environment's proxy, where it names one for a page (None: always direct)
        self.routes = routes

    def check_url(self, url: str) -> URL:
        """The URL to request, or FetchRefused. A host written as an address is checked
        here, since the connector does not resolve (and so does not guard) addresses."""
        try:
            parsed = URL(url.strip())
        except (ValueError, TypeError):
            raise FetchRefused(f"refused: {url!r} is not a valid URL") from None
        if parsed.scheme not in ("http", "https"):
            raise FetchRefused(f"refused: only http and https URLs are fetched, not {url!r}")
        if not parsed.host:
            raise FetchRefused(f"refused: {url!r} has no host")
        if parsed.user is not None or parsed.password is not None:
            raise FetchRefused("refused: URLs with a user name or password are not fetched")
        literal = parse_host_literal(parsed.host)
        if literal is not None:
            self.guard.check(parsed.host, [literal])
            # a legacy form (0x7f000001) is sent as the address it stands for
            parsed = parsed.with_host(str(literal))
        return parsed.with_fragment(None)

    async def get(self, url: str) -> Fetched:
        timeout = self.config.timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await self._follow(url)
        except TimeoutError:
            raise ToolError(f"{url} did not answer in full within {timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise ToolError(f"could not fetch {url}: {_describe(exc)}") from None

    async def _follow(self, url: str) -> Fetched:
        current = url
        for _hop in range(self.config.max_redirects + 1):
            target = self.check_url(current)
            route = Route(self.session, (target,))
            if self.routes is not None:  # every hop: a redirect may leave the proxy's reach
                route = await self.routes.route(target)
            async with await _ask(route) as resp:
                location = resp.headers.get("Location")
                if resp.status in _REDIRECTS and location:
                    try:
                        current = str(target.join(URL(location)))
                    except ValueError:
                        raise ToolError(
                            f"{target} redirected to {location!r}, which is not a valid URL"
                        ) from None
                    continue
                if resp.status >= 400:
                    raise ToolError(f"{target} answered HTTP {resp.status} {resp.reason or ''}")
                body, truncated = await read_capped(resp, self.config.max_bytes)
                return Fetched(
                    url=str(target),
                    status=resp.status,
                    mime=resp.content_type.lower() if "Content-Type" in resp.headers else "",
                    charset=resp.charset,
                    body=body,
                    truncated=truncated,
                )
        raise ToolError(f"{url}: more than {self.config.max_redirects} redirects; gave up")


async def _ask(route: Route) -> aiohttp.ClientResponse:
    """The answer at the first of `route`'s addresses that the proxy can reach: one it
    cannot open a tunnel to (an IPv6 address through a proxy with IPv4 only) gives way to
    the next. A refusal of the credentials is the same for all of them."""
    for url in route.urls[:-1]:
        try:
            return await _get(route, url)
        except aiohttp.ClientHttpProxyError as exc:
            if exc.status == 407:
                raise
    return await _get(route, route.urls[-1])


async def _get(route: Route, url: URL) -> aiohttp.ClientResponse:
    return await route.session.get(
        url,
        allow_redirects=False,
        proxy=route.proxy,
        server_hostname=route.server_hostname,
        headers={"Accept": _ACCEPT, **route.headers},
    )


async def read_capped(resp: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    """At most `cap` bytes (decompressed), then the connection is dropped, not drained."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            resp.close()
            return b"".join(chunks)[:cap], True
    return b"".join(chunks), False


def _describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc})"
    return described(exc)
