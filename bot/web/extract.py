"""A fetched body as text the model can read: HTML as Markdown of the main content
(trafilatura), JSON pretty-printed, plain text as it is, PDF text through pypdf when it is
installed. Anything else is refused with a message that says what it was.

Everything here is CPU-bound and blocking: call it in a thread. The extractor and pypdf are
imported at the first page, never at start-up.
"""

from __future__ import annotations

import codecs
import io
import json
from dataclasses import dataclass

from bot.errors import ToolError
from bot.web.fetch import Fetched

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_TEXT_TYPES = frozenset(
    {"application/xml", "application/javascript", "application/x-yaml", "application/yaml"}
)
#: what a server sends for a file it has no type for (S3, download links): the body says
_UNTYPED = frozenset(
    {"", "application/octet-stream", "binary/octet-stream", "application/force-download"}
)
#: pages of a PDF read at most (a huge PDF costs time in a thread that cannot be stopped)
MAX_PDF_PAGES = 200


@dataclass(frozen=True, slots=True)
class PageText:
    url: str
    title: str
    text: str
    #: html | json | text | pdf
    kind: str
    #: the body was cut at the byte cap before it was read
    truncated: bool = False
    #: characters of the whole text, when `text` holds only its start (0: all of it)
    chars: int = 0


def page_text(page: Fetched) -> PageText:
    mime = _sniff(page.body) if page.mime in _UNTYPED else page.mime
    if mime in HTML_TYPES:
        title, text = _html(page)
        return PageText(page.url, title, text, "html", page.truncated)
    if mime == "application/json" or mime.endswith("+json"):
        return PageText(page.url, "", _json(page), "json", page.truncated)
    if mime.startswith("text/") or mime in _TEXT_TYPES or mime.endswith("+xml"):
        return PageText(page.url, "", _decode(page), "text", page.truncated)
    if mime == "application/pdf":
        title, text = _pdf(page)
        return PageText(page.url, title, text, "pdf")
    raise ToolError(
        f"{page.url} is {mime or 'binary data of an unknown type'} ({len(page.body):,} bytes"
        f"{' or more' if page.truncated else ''}), which cannot be read as text; "
        "web_fetch with save_as puts the file in the workspace"
    )


def _sniff(body: bytes) -> str:
    head = body[:1024].lstrip().lower()
    if head.startswith(b"%pdf-"):
        return "application/pdf"
    if head.startswith((b"<!doctype html", b"<html")):
        return "text/html"
    return "application/octet-stream"


def _decode(page: Fetched) -> str:
    if page.charset and _known(page.charset):
        return page.body.decode(page.charset, errors="replace")
    try:
        return page.body.decode("utf-8")
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        best = from_bytes(page.body).best()
        return page.body.decode(best.encoding if best is not None else "utf-8", errors="replace")


#: text encodings to Python that no page is written in: "idna" and "undefined" raise on
#: any body, "punycode" turns plain text into other letters
_NOT_PAGE_ENCODINGS = frozenset({"idna", "punycode", "undefined"})


def _known(charset: str) -> bool:
    """A text encoding Python has that pages are written in. A server names any charset it
    likes, and some names ("base64", "rot13", "zlib") are codecs that do not decode bytes
    to text."""
    try:
        info = codecs.lookup(charset)
    except LookupError:
        return False
    return info._is_text_encoding and info.name not in _NOT_PAGE_ENCODINGS


def _json(page: Fetched) -> str:
    text = _decode(page)
    if page.truncated:
        return text
    try:
        return json.dumps(json.loads(text), indent=1, ensure_ascii=False)
    except ValueError:
        return text


def _html(page: Fetched) -> tuple[str, str]:
    import trafilatura
    from trafilatura.metadata import extract_title

    # Without a charset in the header the bytes go in as they are: the parser then honours
    # the page's own <meta charset>.
    source: str | bytes = _decode(page) if page.charset and _known(page.charset) else page.body
    tree = trafilatura.load_html(source)
    if tree is None:
        raise ToolError(f"{page.url} is not readable HTML")
    # the title alone: full metadata extraction (dates, authors) costs more than the text
    title = " ".join((extract_title(tree) or "").split())
    text = trafilatura.extract(
        tree,
        url=page.url,
        output_format="markdown",
        include_links=True,
        include_tables=True,
        include_images=False,
        include_comments=False,
        deduplicate=False,
    )
    if not text:
        # no main content found (a list of links, an app shell): all visible text instead
        text = trafilatura.html2txt(trafilatura.load_html(source))
    return title, text or ""


def _pdf(page: Fetched) -> tuple[str, str]:
    if page.truncated:
        raise ToolError(f"{page.url} is a PDF larger than the size limit; it was not read")
    try:
        import pypdf
    except ImportError:
        raise ToolError(
            f"{page.url} is a PDF, and reading PDFs needs pypdf, which is not installed "
            "(pip install 'decapod[pdf]'); web_fetch with save_as puts the file in the workspace"
        ) from None
    try:
        reader = pypdf.PdfReader(io.BytesIO(page.body))
        if reader.is_encrypted:
            raise ToolError(f"{page.url} is an encrypted PDF; it was not read")
        title = str(reader.metadata.title or "") if reader.metadata is not None else ""
        pages = [p.extract_text() or "" for p in reader.pages[:MAX_PDF_PAGES]]
    except ToolError:
        raise
    except pypdf.errors.PyPdfError as exc:
        raise ToolError(f"{page.url} is a PDF that could not be read: {exc}") from None
    except Exception as exc:  # pypdf raises many kinds on a damaged file, not only PyPdfError
        raise ToolError(
            f"{page.url} is a PDF that could not be read (damaged: {type(exc).__name__})"
        ) from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if len(reader.pages) > MAX_PDF_PAGES:
        text += f"\n\n[... only the first {MAX_PDF_PAGES} of {len(reader.pages)} pages ...]"
    return title, text
