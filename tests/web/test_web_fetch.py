"""web_fetch's fetching and reading against the loopback page server: readable text, the
byte cap and the deadline, encodings and types. The address guard: test_s13_*."""

from __future__ import annotations

import asyncio
import sys
import time
from urllib.parse import quote

import pytest

from bot.errors import ToolError
from bot.web.extract import page_text
from tests.fakes.web import ARTICLE_SENTENCE, CYRILLIC_SENTENCE, FakePages
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


@pytest.mark.parametrize("location", ["http://[::1", "http://page.test:99999/x"])
async def test_a_redirect_to_a_malformed_url_is_reported_as_such(
    pages: FakePages, location: str
) -> None:
    # yarl raises ValueError for these: the model got "an internal error" before
    async with open_fetcher() as fetcher:
        url = pages.url("/redirect-raw", host="page.test") + "?url=" + quote(location, safe="")
        with pytest.raises(ToolError, match=r"redirected to .*, which is not a valid URL"):
            await fetcher.get(url)


async def test_an_error_status_is_reported(pages: FakePages) -> None:
    async with open_fetcher() as fetcher:
        with pytest.raises(ToolError, match="HTTP 404"):
            await fetcher.get(pages.url("/missing", host="page.test"))


@pytest.mark.parametrize("path", ["/cp1251", "/cp1251-header"])
async def test_a_page_that_is_not_utf8_is_decoded(pages: FakePages, path: str) -> None:
    async with open_fetcher() as fetcher:
        page = page_text(await fetcher.get(pages.url(path, host="page.test")))
    assert CYRILLIC_SENTENCE in page.text


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/html-base64", ARTICLE_SENTENCE),
        ("/text-rot13", "café"),
        ("/json-zlib", '"answer": 42'),
        ("/text-idna", "café"),
        ("/text-undefined", "café"),
        ("/text-punycode", "plain words\n"),
    ],
)
async def test_a_charset_that_is_not_a_text_encoding_is_ignored(
    pages: FakePages, path: str, expected: str
) -> None:
    # "base64" is a codec Python knows, but bytes.decode("base64") raises LookupError: the
    # model got "an internal error" for a page that reads fine as UTF-8; "idna" and
    # "undefined" are text encodings that raise on any page, "punycode" garbles one
    async with open_fetcher() as fetcher:
        page = page_text(await fetcher.get(pages.url(path, host="page.test")))
    assert expected in page.text


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


@pytest.mark.parametrize(
    ("path", "words"), [("/download", "Crabs in a download"), ("/s3-object", "Crabs in a bucket")]
)
async def test_a_pdf_served_without_a_type_of_its_own_is_read(
    pages: FakePages, path: str, words: str
) -> None:
    async with open_fetcher() as fetcher:
        page = page_text(await fetcher.get(pages.url(path, host="page.test")))
    assert page.kind == "pdf" and words in page.text


async def test_a_damaged_pdf_is_said_to_be_damaged_whatever_pypdf_raises(
    pages: FakePages,
) -> None:
    # pypdf raises more than its own errors on a broken file (here NotImplementedError):
    # the model is still told what the page is, not "an internal error"
    async with open_fetcher() as fetcher:
        fetched = await fetcher.get(pages.url("/damaged.pdf", host="page.test"))
    with pytest.raises(ToolError, match=r"damaged\.pdf is a PDF that could not be read"):
        page_text(fetched)


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
