"""web_fetch's fetching and reading against the loopback page server: readable text, the
guard on every hop and every name, the byte cap and the deadline, encodings and types."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from bot.errors import ToolError
from bot.web.extract import page_text
from bot.web.guard import FetchRefused
from tests.fakes.web import ARTICLE_SENTENCE, CYRILLIC_SENTENCE, FakePages, LoopbackNetwork
from tests.web.conftest import open_fetcher


async def test_article_text_is_extracted_without_scripts_or_navigation(pages: FakePages) -> None:
    async with open_fetcher() as fetcher:
        page = page_text(await fetcher.get(pages.url("/article", host="page.test")))
    assert page.kind == "html" and page.title
    assert ARTICLE_SENTENCE in page.text
    assert "All about hermit crabs" in page.text
    # links come out as Markdown, made absolute against the page's URL
    assert f"[biology notes]({pages.url('/sources/biology', host='page.test')})" in page.text
    for junk in ("SCRIPT_TEXT", "STYLE_TEXT", "NAVIGATION_", "FOOTER_COPYRIGHT"):
        assert junk not in page.text


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


async def test_a_50_mb_body_is_cut_at_the_byte_cap(pages: FakePages) -> None:
    async with open_fetcher(max_bytes=256 * 1024) as fetcher:
        fetched = await fetcher.get(pages.url("/big", host="page.test"))
    assert fetched.truncated and len(fetched.body) == 256 * 1024
    # the connection was dropped, not drained: the server could not write the 50 MB
    await asyncio.sleep(0.2)
    assert pages.served < FakePages.BIG_BYTES


async def test_a_slow_body_is_stopped_at_the_deadline(pages: FakePages) -> None:
    async with open_fetcher(timeout_s=1.0) as fetcher:
        started = time.monotonic()
        with pytest.raises(ToolError, match=r"did not answer in full within 1 s"):
            await fetcher.get(pages.url("/slow", host="page.test"))
        elapsed = time.monotonic() - started
    await asyncio.wait_for(pages.slow_disconnected.wait(), 10)
    assert 0.9 <= elapsed < 30


async def test_a_redirect_loop_gives_up(pages: FakePages) -> None:
    async with open_fetcher(max_redirects=3) as fetcher:
        with pytest.raises(ToolError, match="more than 3 redirects"):
            await fetcher.get(pages.url("/loop", host="page.test"))


async def test_an_error_status_is_reported(pages: FakePages) -> None:
    async with open_fetcher() as fetcher:
        with pytest.raises(ToolError, match="HTTP 404"):
            await fetcher.get(pages.url("/missing", host="page.test"))


@pytest.mark.parametrize("path", ["/cp1251", "/cp1251-header"])
async def test_a_page_that_is_not_utf8_is_decoded(pages: FakePages, path: str) -> None:
    async with open_fetcher() as fetcher:
        page = page_text(await fetcher.get(pages.url(path, host="page.test")))
    assert CYRILLIC_SENTENCE in page.text


async def test_json_and_text_pass_through(pages: FakePages) -> None:
    async with open_fetcher() as fetcher:
        data = page_text(await fetcher.get(pages.url("/json", host="page.test")))
        text = page_text(await fetcher.get(pages.url("/text", host="page.test")))
    assert data.kind == "json" and '"answer": 42' in data.text
    assert text.kind == "text" and text.text == "plain words, café\n"


async def test_a_pdf_is_read_with_pypdf(pages: FakePages) -> None:
    async with open_fetcher() as fetcher:
        page = page_text(await fetcher.get(pages.url("/pdf", host="page.test")))
    assert page.kind == "pdf" and "Crabs in a PDF document" in page.text


async def test_without_pypdf_a_pdf_is_refused_clearly(
    pages: FakePages, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pypdf", None)  # import pypdf now raises ImportError
    async with open_fetcher() as fetcher:
        fetched = await fetcher.get(pages.url("/pdf", host="page.test"))
    with pytest.raises(ToolError, match=r"reading PDFs needs pypdf.*save_as"):
        page_text(fetched)


async def test_binary_content_is_refused_with_what_it_was(pages: FakePages) -> None:
    async with open_fetcher() as fetcher:
        fetched = await fetcher.get(pages.url("/image.png", host="page.test"))
    with pytest.raises(ToolError, match=r"image/png \(2,056 bytes\).*save_as"):
        page_text(fetched)
