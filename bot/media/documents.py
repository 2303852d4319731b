"""A document's text for the model: PDF through pypdf, text-like files (plain text, Markdown,
CSV, JSON, source code) decoded as they are. Capped, with a note saying what was cut.
CPU-bound and blocking: call it in a thread."""

from __future__ import annotations

import codecs
import io
import json
import logging
from pathlib import PurePosixPath

from bot.media.errors import MediaProblem

MAX_PDF_PAGES = 200

_TEXT_MIMES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/x-yaml",
        "application/yaml",
        "application/toml",
        "application/javascript",
        "application/x-sh",
        "application/x-python",
        "application/sql",
        "application/csv",
        "application/x-ndjson",
        "image/svg+xml",
    }
)
_TEXT_SUFFIXES = frozenset(
    {
        ".txt",
        ".md",
        ".markdown",
        ".rst",
        ".csv",
        ".tsv",
        ".json",
        ".jsonl",
        ".ndjson",
        ".yaml",
        ".yml",
        ".toml",
        ".ini",
        ".cfg",
        ".conf",
        ".xml",
        ".html",
        ".htm",
        ".svg",
        ".log",
        ".py",
        ".pyi",
        ".js",
        ".mjs",
        ".ts",
        ".tsx",
        ".jsx",
        ".java",
        ".kt",
        ".go",
        ".rs",
        ".c",
        ".h",
        ".cc",
        ".cpp",
        ".hpp",
        ".cs",
        ".rb",
        ".php",
        ".swift",
        ".scala",
        ".sh",
        ".bash",
        ".zsh",
        ".fish",
        ".ps1",
        ".sql",
        ".r",
        ".lua",
        ".pl",
        ".hs",
        ".ex",
        ".exs",
        ".erl",
        ".clj",
        ".dart",
        ".vue",
        ".svelte",
        ".css",
        ".scss",
        ".tex",
        ".bib",
        ".diff",
        ".patch",
        ".env.example",
        ".dockerfile",
        ".gitignore",
        ".properties",
        ".gradle",
        ".mk",
    }
)
_TEXT_NAMES = frozenset({"Makefile", "Dockerfile", "README", "LICENSE", "Containerfile"})


def is_pdf(name: str, mime: str) -> bool:
    return mime == "application/pdf" or name.lower().endswith(".pdf")


def is_text(name: str, mime: str) -> bool:
    path = PurePosixPath(name)
    return (
        mime.startswith("text/")
        or mime in _TEXT_MIMES
        or path.suffix.lower() in _TEXT_SUFFIXES
        or path.name in _TEXT_NAMES
    )


def is_document(name: str, mime: str) -> bool:
    return is_pdf(name, mime) or is_text(name, mime)


def extract_text(data: bytes, name: str, mime: str, max_chars: int) -> str:
    """The text the model gets, cut at `max_chars` with a note. MediaProblem when the file
    cannot be read."""
    if not data:
        raise MediaProblem(f"{name} is empty (0 bytes)")
    text = _pdf_text(data, name) if is_pdf(name, mime) else _decoded(data, name, mime)
    if not text.strip():
        raise MediaProblem(f"{name} has no text I can read (a scan or an image-only PDF?)")
    if len(text) > max_chars:
        return (
            text[:max_chars]
            + f"\n[… cut: the first {max_chars:,} of {len(text):,} characters are shown]"
        )
    return text


def _decoded(data: bytes, name: str, mime: str) -> str:
    wide = wide_encoding(data)
    if wide is not None:
        # every other byte of UTF-16 text is NUL: the mark at its start says what it is
        text = data.decode(wide, errors="replace").removeprefix("\ufeff")
    elif b"\x00" in data[:8192]:
        raise MediaProblem(f"{name} looks like a binary file, not text")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    if mime == "application/json" or name.lower().endswith(".json"):
        try:
            # pretty-printed: a one-line JSON document is hard for a model to read
            text = json.dumps(json.loads(text), indent=1, ensure_ascii=False)
        except ValueError:
            pass  # shown as it is; the model can still read a broken file
    return text


def wide_encoding(data: bytes) -> str | None:
    """The UTF-32 or UTF-16 codec (with its byte order) when the data starts with its byte
    order mark (Windows' "Unicode" text and Excel's "Unicode Text" export are UTF-16), else
    None. The mark stays in what the codec decodes, so the text encodes back as it was."""
    for mark, codec in _MARKS:
        if data.startswith(mark):
            return codec
    return None


#: UTF-32's marks first: UTF-32-LE's starts with UTF-16-LE's
_MARKS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _pdf_text(data: bytes, name: str) -> str:
    try:
        import pypdf
    except ImportError:
        raise MediaProblem(
            f"I cannot read {name}: reading PDFs needs pypdf, which is not installed "
            "(pip install 'decapod[media]')"
        ) from None
    # pypdf logs every repair it makes to a damaged file; one reply says it instead
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise MediaProblem(f"{name} is an encrypted PDF; I cannot read it")
        count = len(reader.pages)
        pages = [p.extract_text() or "" for p in reader.pages[:MAX_PDF_PAGES]]
    except MediaProblem:
        raise
    except Exception:  # pypdf raises many kinds on a damaged file, not only PyPdfError
        raise MediaProblem(f"{name} is a damaged PDF; I could not read it") from None
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if count > MAX_PDF_PAGES:
        text += f"\n\n[… only the first {MAX_PDF_PAGES} of {count} pages were read]"
    return text
