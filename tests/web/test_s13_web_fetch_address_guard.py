"""S13: web_fetch reaches public addresses only. Names the test's resolver maps to private,
metadata and loopback addresses, every way of writing an address, and a loopback redirect
chain into them are refused before a connection is opened; every hop is checked again; the
loopback page works only when the test allows it. The test network (conftest) fails the
test on any connection to anything but 127.0.0.1."""

from __future__ import annotations

import pytest

from bot.errors import ToolError
from bot.web.extract import page_text
from bot.web.guard import FetchRefused
from tests.fakes.web import ARTICLE_SENTENCE, FakePages, LoopbackNetwork
from tests.web.conftest import open_fetcher


async def test_the_loopback_page_works_only_when_the_test_allows_it(
    pages: FakePages, net: LoopbackNetwork
) -> None:
    async with open_fetcher(allow_hosts=[]) as fetcher:
        with pytest.raises(FetchRefused, match="loopback"):
            await fetcher.get(pages.url("/article", host="page.test"))
    assert net.connects == []
    async with open_fetcher(allow_hosts=["page.test"]) as fetcher:
        page = page_text(await fetcher.get(pages.url("/article", host="page.test")))
    assert ARTICLE_SENTENCE in page.text and net.connects == ["127.0.0.1"]


async def test_redirects_are_followed_and_each_hop_is_checked(
    pages: FakePages, net: LoopbackNetwork
) -> None:
    async with open_fetcher() as fetcher:
        fetched = await fetcher.get(pages.url("/redirect/3", host="page.test"))
        assert fetched.url == pages.url("/article", host="page.test")
        assert ARTICLE_SENTENCE in page_text(fetched).text
        for target in (
            f"http://internal.test:{pages.port}/admin",  # a name resolving to 10.0.0.1
            "http://169.254.169.254/latest/meta-data/",
            f"http://0x7f000001:{pages.port}/article",
            f"http://[::1]:{pages.port}/article",
            f"http://[::ffff:127.0.0.1]:{pages.port}/article",
            f"http://mapped.test:{pages.port}/article",
        ):
            start = pages.url(f"/redirect-to?url={target}", host="page.test")
            with pytest.raises(FetchRefused, match="refused"):
                await fetcher.get(start)
    assert set(net.connects) == {"127.0.0.1"}


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("internal.test", r"10\.0\.0\.1.*private"),
        ("metadata.test", "metadata"),
        ("v6-loopback.test", "loopback"),
        ("mapped.test", "loopback"),
        ("rebind.test", r"10\.0\.0\.1"),
        ("localhost", "loopback"),
        ("0x7f000001", "loopback"),
        ("2130706433", "loopback"),
        ("0177.0.0.1", "loopback"),
        ("127.1", "loopback"),
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("10.0.0.1", "private"),
        ("169.254.169.254", "metadata"),
        ("0.0.0.0", "unspecified"),
    ],
)
async def test_names_and_addresses_that_are_not_public_are_refused(
    pages: FakePages, net: LoopbackNetwork, host: str, why: str
) -> None:
    async with open_fetcher() as fetcher:
        with pytest.raises(FetchRefused, match=why):
            await fetcher.get(f"http://{host}:{pages.port}/article")
    assert net.connects == [], "nothing was connected to"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://page.test/x", "only http and https"),
        ("gopher://page.test:70/", "only http and https"),
        ("http://user:pw@page.test/", "user name or password"),
        ("http:///nohost", "no host"),
        ("not a url", "only http and https"),
    ],
)
async def test_urls_other_than_plain_http_are_refused(url: str, why: str) -> None:
    async with open_fetcher() as fetcher:
        with pytest.raises(FetchRefused, match=why):
            await fetcher.get(url)


async def test_the_harness_would_catch_a_guard_that_let_a_private_address_through(
    pages: FakePages, net: LoopbackNetwork
) -> None:
    # allow_private switches the guard off for 10.0.0.1: the connection attempt must then
    # hit the test network's refusal, which is what fails a test with a broken guard
    async with open_fetcher(allow_private=True) as fetcher:
        with pytest.raises(ToolError, match="could not fetch"):
            await fetcher.get(f"http://internal.test:{pages.port}/")
    assert net.violations == ["10.0.0.1"]
    net.violations.clear()
