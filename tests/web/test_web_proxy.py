"""The web tools take the environment's proxy (HTTP_PROXY, NO_PROXY), as the gateway's other
sessions do, and a proxy is no way around the address guard: the page's name is resolved
and checked by Decapod, and the proxy is asked for a tunnel to that checked address only,
in which TLS and Host still name the page. The proxy is a real forward proxy on 127.0.0.1
(tests/fakes/forward_proxy.py); the pages are served over TLS with a certificate for their
names, by a server that answers by Host."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest

from bot.errors import ToolError
from bot.proxy_env import ProxyLookup
from bot.web.config import WebConfig
from bot.web.extract import page_text
from bot.web.guard import FetchRefused
from bot.web.search import SearchChain, build_provider
from tests.fakes.forward_proxy import environment_proxy
from tests.fakes.tls import LocalAuthority
from tests.fakes.web import ARTICLE_SENTENCE, FakePages, FakeSearchAPI, LoopbackNetwork, NamedPages
from tests.web.conftest import open_fetcher

HTTPS = ("HTTPS_PROXY",)
#: krabbenladen.test with an umlaut, as DNS, TLS and Host carry it
CRAB_SHOP = "xn--krabbenlden-s8a.test"
#: a name of the pages' server that its certificate does not name
UNCERTIFIED = "elsewhere.test"


@pytest.fixture
async def named_pages(net: LoopbackNetwork) -> AsyncIterator[NamedPages]:
    """https pages under page.test and dual.test (a name with an IPv6 address first), with a
    certificate for those names only, which the fetcher's sessions trust; UNCERTIFIED names
    the same server, and no certificate."""
    authority = LocalAuthority()
    net.tls = authority.client_context()
    net.add("dual.test", ["::1", "127.0.0.1"])
    net.add(CRAB_SHOP, "127.0.0.1")
    net.add(UNCERTIFIED, "127.0.0.1")
    names = ["page.test", "dual.test", CRAB_SHOP]
    async with NamedPages(authority.server_context(names), names) as server:
        yield server


async def test_a_page_is_fetched_through_the_proxy_at_the_address_decapod_checked(
    named_pages: NamedPages, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = named_pages
    async with environment_proxy(monkeypatch, variables=HTTPS) as proxy, open_fetcher() as fetcher:
        fetched = await fetcher.get(pages.url("/redirect/2", host="page.test"))
    # the page itself: the server answers by Host, and TLS was for the page's name (the
    # certificate names page.test, not the address)
    assert ARTICLE_SENTENCE in page_text(fetched).text
    assert fetched.url == pages.url("/article", host="page.test")
    assert pages.server_names and set(pages.server_names) == {"page.test"}
    # through the proxy, a tunnel to the checked address (the hops share it), not to the
    # name: the proxy opens it to the request line's address; the name shows in its Host
    assert proxy.targets and set(proxy.targets) == {f"127.0.0.1:{pages.port}"}
    assert proxy.connects and set(proxy.connects) == {
        (f"127.0.0.1:{pages.port}", f"page.test:{pages.port}")
    }


async def test_the_certificate_is_checked_for_the_name_inside_the_tunnel(
    named_pages: NamedPages, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the tunnel is to an address: the page's name is still what the certificate must name
    async with (
        environment_proxy(monkeypatch, variables=HTTPS) as proxy,
        open_fetcher(allow_hosts=[UNCERTIFIED]) as fetcher,
    ):
        with pytest.raises(ToolError, match="certificate"):
            await fetcher.get(named_pages.url("/article", host=UNCERTIFIED))
    assert proxy.targets == [f"127.0.0.1:{named_pages.port}"]


async def test_an_address_the_proxy_cannot_reach_gives_way_to_the_next(
    named_pages: NamedPages, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dual.test resolves to ::1 first, where nothing listens: the proxy answers 502
    pages = named_pages
    async with (
        environment_proxy(monkeypatch, variables=HTTPS) as proxy,
        open_fetcher(allow_hosts=["dual.test"]) as fetcher,
    ):
        fetched = await fetcher.get(pages.url("/article", host="dual.test"))
    assert ARTICLE_SENTENCE in page_text(fetched).text
    assert proxy.targets == [f"[::1]:{pages.port}", f"127.0.0.1:{pages.port}"]


async def test_a_plain_http_page_is_refused_through_a_proxy(
    named_pages: NamedPages, pages: FakePages, monkeypatch: pytest.MonkeyPatch
) -> None:
    # asked for by its address, a proxy takes Host from the request line: the answer would
    # be the address's default site, quoted as the page
    async with environment_proxy(monkeypatch) as proxy, open_fetcher() as fetcher:
        with pytest.raises(FetchRefused, match=r"through a proxy only https:// pages .*https://"):
            await fetcher.get(pages.url("/article", host="page.test"))
        # an https page that sends the fetch to http:// is refused at that hop
        redirect = named_pages.url("/redirect-to?url=", host="page.test") + quote(
            pages.url("/article", host="page.test"), safe=""
        )
        monkeypatch.setenv("HTTPS_PROXY", os.environ["HTTP_PROXY"])
        with pytest.raises(FetchRefused, match="plain http"):
            await fetcher.get(redirect)
    assert proxy.targets == [f"127.0.0.1:{named_pages.port}"]


async def test_a_proxy_that_refuses_is_named_without_its_password(
    named_pages: NamedPages, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    found = [{"title": "Crabs", "url": "https://crabs.example/"}]
    async with (
        environment_proxy(monkeypatch, ("crab", "right-secret"), HTTPS) as proxy,
        FakeSearchAPI("searxng", found) as api,
        aiohttp.ClientSession() as session,
    ):
        wrong = f"http://crab:wrong-secret@127.0.0.1:{proxy.port}"
        monkeypatch.setenv("HTTPS_PROXY", wrong)
        # a name of two addresses: a refusal of the credentials is not tried at the next
        async with open_fetcher(allow_hosts=["dual.test"]) as fetcher:
            with pytest.raises(ToolError) as fetch_failed:
                await fetcher.get(named_pages.url("/article", host="dual.test"))
        assert proxy.refused == [f"[::1]:{named_pages.port}"]
        config = WebConfig.model_validate(
            {"search": [{"type": "searxng", "base_url": f"https://127.0.0.1:{api.port}"}]}
        )
        search = SearchChain([build_provider(config.search[0], session, None, ProxyLookup())], 60.0)
        with pytest.raises(ToolError) as search_failed:
            await search.search("hermit crab", 5)
    assert len(proxy.refused) == 2
    for said in (str(fetch_failed.value), str(search_failed.value), caplog.text):
        assert "the proxy refused (407 Proxy Authentication Required)" in said
        assert "secret" not in said


async def test_a_name_in_unicode_is_resolved_checked_and_sent_as_punycode(
    named_pages: NamedPages, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as the direct path does: the guard's allow_hosts, the resolver and TLS see one name
    pages = named_pages
    async with (
        environment_proxy(monkeypatch, variables=HTTPS),
        open_fetcher(allow_hosts=[CRAB_SHOP]) as fetcher,
    ):
        fetched = await fetcher.get(pages.url("/article", host="krabbenläden.test"))
    assert ARTICLE_SENTENCE in page_text(fetched).text
    assert pages.server_names == [CRAB_SHOP]


@pytest.mark.parametrize("host", ["internal.test", "metadata.test", "rebind.test"])
async def test_a_private_address_is_refused_before_the_proxy_is_asked(
    named_pages: NamedPages, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    # the proxy would resolve the name itself and reach what the gateway can: the name is
    # checked here first, straight and after a redirect
    pages = named_pages
    private = f"https://{host}:{pages.port}/article"
    redirect = pages.url("/redirect-to?url=" + quote(private, safe=""), host="page.test")
    async with environment_proxy(monkeypatch, variables=HTTPS) as proxy, open_fetcher() as fetcher:
        with pytest.raises(FetchRefused, match="only public addresses"):
            await fetcher.get(private)
        assert proxy.targets == []
        with pytest.raises(FetchRefused, match="only public addresses"):
            await fetcher.get(redirect)
    # only the first hop went out: the redirect's private target never reached the proxy
    assert proxy.targets == [f"127.0.0.1:{pages.port}"]


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
