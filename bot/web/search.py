"""web_search: a chain of search APIs tried in order, like the model chain.

A provider that fails (an error status, a timeout, an answer that is not what its API
sends) is skipped for `search_cooldown_s` (or a 429's Retry-After when longer, bounded to an
hour as the model providers' is), and the next one is asked. While every provider cools
down, the tool is not offered at all.

There is no keyless default: the keyless endpoints that exist (scraping a search engine's
HTML pages) break without notice and block automated use, so they are not dependable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Protocol

import aiohttp

from bot.errors import ToolError
from bot.proxy_env import ProxyLookup
from bot.web.config import (
    BraveSearchConfig,
    SearchProviderConfig,
    SearxngSearchConfig,
    TavilySearchConfig,
)
from bot.web.route import described

log = logging.getLogger("decapod.web")

#: the most of a search API's answer that is read: a few results' titles and snippets are
#: kilobytes (Brave's with its extras some hundred); a server that keeps sending is cut off
#: here, not only by the timeout, with the whole answer held in memory
MAX_ANSWER_BYTES = 2 << 20


@dataclass(frozen=True, slots=True)
class SearchResult:
    title: str
    url: str
    snippet: str


class SearchFailed(Exception):
    def __init__(self, reason: str, retry_after: float = 0.0) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class SearchProvider(Protocol):
    name: str

    async def search(self, query: str, count: int) -> list[SearchResult]: ...


class _Snippet(HTMLParser):
    """Search APIs put <strong> and entities in snippets; the model needs only the text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def plain(text: Any) -> str:
    if not isinstance(text, str):
        return ""
    parser = _Snippet()
    parser.feed(text)
    parser.close()
    return " ".join("".join(parser.parts).split())


class HttpSearchProvider:
    """The shared request and error handling; each API builds its request and reads its
    answer."""

    def __init__(
        self,
        config: SearchProviderConfig,
        session: aiohttp.ClientSession,
        key: str | None,
        proxies: ProxyLookup,
    ):
        self.config = config
        self.session = session
        self.key = key
        self.name: str = config.type
        #: the environment's proxy for the API's address (HTTPS_PROXY, NO_PROXY...)
        self.proxies = proxies

    async def search(self, query: str, count: int) -> list[SearchResult]:
        try:
            async with asyncio.timeout(self.config.timeout_s):
                body = await self._request(query, count)
        except TimeoutError:
            raise SearchFailed(f"no answer within {self.config.timeout_s:g} s") from None
        except aiohttp.ClientError as exc:
            raise SearchFailed(described(exc)) from None
        try:
            results = self._results(body, count)
        except (KeyError, TypeError, AttributeError):
            raise SearchFailed("the answer is not in the API's format") from None
        return [r for r in results if r.url.startswith(("http://", "https://"))][:count]

    async def _request(self, query: str, count: int) -> Any:
        raise NotImplementedError

    def _results(self, body: Any, count: int) -> list[SearchResult]:
        raise NotImplementedError

    async def _json(self, resp: aiohttp.ClientResponse) -> Any:
        if resp.status >= 400:
            # bounded as a model provider's is: a header a proxy or a broken server filled in
            # ("99999999") must not turn web search off until the next restart
            from bot.providers.remote import parse_retry_after

            raise SearchFailed(f"HTTP {resp.status}", parse_retry_after(resp.headers) or 0.0)
        from bot.web.fetch import read_capped

        body, truncated = await read_capped(resp, MAX_ANSWER_BYTES)
        if truncated:
            raise SearchFailed(f"the answer is larger than {MAX_ANSWER_BYTES:,} bytes; not read")
        try:
            return json.loads(body)
        except ValueError:  # UnicodeDecodeError too: a JSON answer is UTF-8 (RFC 8259)
            raise SearchFailed("the answer is not JSON") from None


class SearxngSearch(HttpSearchProvider):
    config: SearxngSearchConfig

    async def _request(self, query: str, count: int) -> Any:
        headers = {}
        if self.config.username is not None:  # the key is basic auth's password
            headers["Authorization"] = aiohttp.encode_basic_auth(
                self.config.username, self.key or ""
            )
        elif self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        params = {"q": query, "format": "json", "safesearch": "1"}
        url = f"{self.config.base_url}/search"
        proxy = await self.proxies.for_url(url)
        async with self.session.get(url, params=params, headers=headers, proxy=proxy) as resp:
            return await self._json(resp)

    def _results(self, body: Any, count: int) -> list[SearchResult]:
        return [
            SearchResult(plain(r.get("title")), str(r["url"]), plain(r.get("content")))
            for r in body["results"]
        ]


class BraveSearch(HttpSearchProvider):
    config: BraveSearchConfig

    async def _request(self, query: str, count: int) -> Any:
        headers = {"X-Subscription-Token": self.key or "", "Accept": "application/json"}
        params = {"q": query, "count": str(count)}
        url = f"{self.config.base_url}/web/search"
        proxy = await self.proxies.for_url(url)
        async with self.session.get(url, params=params, headers=headers, proxy=proxy) as resp:
            return await self._json(resp)

    def _results(self, body: Any, count: int) -> list[SearchResult]:
        web = body.get("web") or {"results": []}
        return [
            SearchResult(plain(r.get("title")), str(r["url"]), plain(r.get("description")))
            for r in web["results"]
        ]


class TavilySearch(HttpSearchProvider):
    config: TavilySearchConfig

    async def _request(self, query: str, count: int) -> Any:
        headers = {"Authorization": f"Bearer {self.key}"}
        payload = {"query": query, "max_results": count, "search_depth": "basic"}
        url = f"{self.config.base_url}/search"
        proxy = await self.proxies.for_url(url)
        async with self.session.post(url, json=payload, headers=headers, proxy=proxy) as resp:
            return await self._json(resp)

    def _results(self, body: Any, count: int) -> list[SearchResult]:
        return [
            SearchResult(plain(r.get("title")), str(r["url"]), plain(r.get("content")))
            for r in body["results"]
        ]


_PROVIDERS: dict[str, type[HttpSearchProvider]] = {
    "searxng": SearxngSearch,
    "brave": BraveSearch,
    "tavily": TavilySearch,
}


def build_provider(
    config: SearchProviderConfig,
    session: aiohttp.ClientSession,
    key: str | None,
    proxies: ProxyLookup | None = None,
) -> HttpSearchProvider:
    return _PROVIDERS[config.type](config, session, key, proxies or ProxyLookup())


class SearchChain:
    def __init__(
        self,
        providers: Sequence[SearchProvider],
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.providers = list(providers)
        self.cooldown_s = cooldown_s
        self.clock = clock
        self._cool_until: dict[int, float] = {}
        self._said_down = False

    def _ready(self, i: int) -> bool:
        return self._cool_until.get(i, 0.0) <= self.clock()

    def available(self) -> bool:
        return any(self._ready(i) for i in range(len(self.providers)))

    async def search(self, query: str, count: int) -> tuple[str, list[SearchResult]]:
        """(the provider that answered, its results), or ToolError naming each failure."""
        failures = []
        for i, provider in enumerate(self.providers):
            if not self._ready(i):
                failures.append(f"{provider.name}: cooling down after a failure")
                continue
            try:
                results = await provider.search(query, count)
            except SearchFailed as exc:
                wait = max(self.cooldown_s, exc.retry_after)
                self._cool_until[i] = self.clock() + wait
                log.warning(
                    "web search via %s failed: %s (skipped for %.0f s)", provider.name, exc, wait
                )
                failures.append(f"{provider.name}: {exc}")
                continue
            if self._said_down:
                log.info("web search works again (via %s)", provider.name)
            self._said_down = False
            return provider.name, results
        if not self._said_down:
            self._said_down = True
            log.warning(
                "web search is unavailable: every provider failed; it is not offered until "
                "one has cooled down"
            )
        raise ToolError("web search is unavailable right now (" + "; ".join(failures) + ")")
