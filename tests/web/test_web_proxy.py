"""The web tools take the environment's proxy (HTTP_PROXY, NO_PROXY), as the gateway's other
sessions do, and a proxy is no way around the address guard: the page's name is resolved
and checked by Decapod, and the proxy is asked for that checked address only. The proxy is
a real forward proxy on 127.0.0.1 (tests/fakes/forward_proxy.py)."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import pytest

from bot.proxy_env import ProxyLookup
from bot.web.config import WebConfig
from bot.web.extract import page_text
from bot.web.guard import FetchRefused
from bot.web.search import build_provider
from tests.fakes.forward_proxy import environment_proxy
from tests.fakes.web import ARTICLE_SENTENCE, FakePages, FakeSearchAPI
from tests.web.conftest import open_fetcher


async def test_a_page_is_fetched_through_the_proxy_at_the_address_decapod_checked(
    pages: FakePages, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with environment_proxy(monkeypatch) as proxy, open_fetcher() as fetcher:
        fetched = await fetcher.get(pages.url("/redirect/2", host="page.test"))
    assert ARTICLE_SENTENCE in page_text(fetched).text
    assert fetched.url == pages.url("/article", host="page.test")
    # every hop through the proxy, each asked by its checked address, never by the name
    assert proxy.targets == [
        pages.url("/redirect/2"),
        pages.url("/redirect/1"),
        pages.url("/article"),
    ]


@pytest.mark.parametrize("host", ["internal.test", "metadata.test", "rebind.test"])
async def test_a_private_address_is_refused_before_the_proxy_is_asked(
    pages: FakePages, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    # the proxy would resolve the name itself and reach what the gateway can: the name is
    # checked here first, straight and after a redirect
    private = f"http://{host}:{pages.port}/article"
    redirect = pages.url("/redirect-to?url=" + quote(private, safe=""), host="page.test")
    async with environment_proxy(monkeypatch) as proxy, open_fetcher() as fetcher:
        with pytest.raises(FetchRefused, match="only public addresses"):
            await fetcher.get(private)
        assert proxy.targets == []
        with pytest.raises(FetchRefused, match="only public addresses"):
            await fetcher.get(redirect)
    # only the first hop went out: the redirect's private target never reached the proxy
    assert [t.partition("?")[0] for t in proxy.targets] == [pages.url("/redirect-to")]


async def test_no_proxy_sends_a_page_straight(
    pages: FakePages, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with environment_proxy(monkeypatch) as proxy:
        monkeypatch.setenv("NO_PROXY", "page.test")
        async with open_fetcher() as fetcher:
            fetched = await fetcher.get(pages.url("/article", host="page.test"))
    assert ARTICLE_SENTENCE in page_text(fetched).text
    assert proxy.targets == []


async def test_a_search_goes_through_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    found = [{"title": "Crabs", "url": "https://crabs.example/"}]
    async with FakeSearchAPI("searxng", found) as api:
        base_url = f"http://127.0.0.1:{api.port}"
        config = WebConfig.model_validate({"search": [{"type": "searxng", "base_url": base_url}]})
        async with environment_proxy(monkeypatch) as proxy, aiohttp.ClientSession() as session:
            provider = build_provider(config.search[0], session, None, ProxyLookup())
            results = await provider.search("hermit crab", 5)
    assert [r.url for r in results] == ["https://crabs.example/"]
    assert [t.partition("?")[0] for t in proxy.targets] == [f"{base_url}/search"]
