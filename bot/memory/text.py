"""Text handling for memory: chunking, FTS5 query building, hashing, token estimates.

Everything here is pure and synchronous, so it is cheap to test exhaustively.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from bot.memory.dates import day_words, query_dates, resolve_relative
from bot.store.memory import owner_tag

# Letters and digits only: FTS5's unicode61 tokenizer treats "_" and punctuation as
# separators, so a token made of them would become an empty phrase.
#: a word: letters and digits, in any script
WORD = re.compile(r"[^\W_]+")
_SPAN = re.compile(r"\S+")
#: "Maria: " in front of what an item says
_SPEAKER = re.compile(r"^([^:\n]{1,40}):\s")
#: words this long that share their first letters are one word ("adopted" / "adopting")
_STEM = 5
_MAX_QUERY_TERMS = 16
_CONTEXT_CHARS = 300
#: the FTS5 columns a search looks in: what was said, and what it depends on
SEARCHED = "{text context}"

# Dropped from OR-queries: they match nearly every row, which costs time and adds no signal.
_STOPWORDS = """a about above after again all am an and any are as at be been before being below
    between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself
    yourselves s t d ll m re ve"""
STOPWORDS = frozenset(_STOPWORDS.split())


@dataclass(frozen=True, slots=True)
class Chunk:
    seq: int
    text: str


def chunk_text(text: str, words: int, overlap: int) -> list[Chunk]:
    """Split `text` into windows of `words` words sharing `overlap` words with the previous
    window. Each chunk is a slice of the original, so line breaks and Markdown survive."""
    if overlap >= words:
        raise ValueError("overlap must be smaller than the chunk size")
    spans = [m.span() for m in _SPAN.finditer(text)]
    if not spans:
        return []
    chunks: list[Chunk] = []
    start = 0
    while True:
        end = min(start + words, len(spans))
        chunks.append(Chunk(len(chunks), text[spans[start][0] : spans[end - 1][1]]))
        if end == len(spans):
            return chunks
        start = end - overlap


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embedding_input(text: str) -> str:
    """What an embedder is given for a text: its content words. A static model averages
    every token, so a speaker's name in front and function words ("how", "are", "you")
    would make every short remark of one person look alike."""
    words = [
        w for w in WORD.findall(without_speaker(text))
        if w.lower() not in STOPWORDS and not w.isdigit()
    ]  # fmt: skip
    return " ".join(words) or text.strip()


def query_terms(text: str) -> list[str]:
    """The distinct words of a user's text, lowercased, without stopwords (unless nothing
    else is left), at most 16."""
    seen: dict[str, None] = {}
    for word in WORD.findall(text.lower()):
        seen.setdefault(word, None)
    terms = list(seen)
    content = [t for t in terms if t not in STOPWORDS]
    return (content or terms)[:_MAX_QUERY_TERMS]


def fts_match(
    terms: list[str], owners: list[str], *, require_all: bool = False, columns: str = "text"
) -> str | None:
    """An FTS5 MATCH expression for `terms` in `columns` (the text column, or SEARCHED),
    limited to `owners`.

    Every term is a quoted string of letters and digits, so no user text can form FTS5
    syntax. None when there is nothing to search for."""
    if not terms or not owners:
        return None
    joiner = " AND " if require_all else " OR "
    words = joiner.join(f'"{t}"' for t in terms)
    tags = " OR ".join(owner_tag(o) for o in owners)
    return f"owner_tag : ({tags}) AND {columns} : ({words})"


def _day(at: float) -> dt.date:
    return dt.datetime.fromtimestamp(at, dt.UTC).date()


def indexed_text(text: str, *, speaker: str, said: float) -> str:
    """What an item stores and shows: the speaker in front, and each relative date followed
    by the date it means ("Maria: I fell yesterday (7 May 2023)")."""
    text = resolve_relative(text, _day(said))
    return f"{speaker}: {text}" if speaker else text


def indexed_context(context: str, said: float, classes: str = "") -> str:
    """What an item is searched by besides its text: the day it was said, (the start of)
    the turn it depends on, and the classes of its nouns (bot/memory/class_words.py)."""
    context = " ".join(context.split())
    if len(context) > _CONTEXT_CHARS:
        context = context[:_CONTEXT_CHARS].rsplit(" ", 1)[0]
    return (
        f"said on {day_words(_day(said))}"
        + (f"; after: {context}" if context else "")
        + (f"; {classes}" if classes else "")
    )


def with_dates(query: str, now: float) -> str:
    """The query with the dates it names appended as the index writes them."""
    dates = query_dates(query, _day(now))
    return " ".join([query, *dates]) if dates else query


def estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def speaker_of(text: str) -> str | None:
    """The speaker an item's text starts with ("Maria: ..."), lowercased; None without one."""
    m = _SPEAKER.match(text)
    return m.group(1).strip().lower() if m else None


def without_speaker(text: str) -> str:
    """What an item says, without the speaker in front."""
    return _SPEAKER.sub("", text, count=1)


def same_word(a: str, b: str) -> bool:
    """One word, or two long ones that share their first letters."""
    return a == b or (len(a) >= _STEM and len(b) >= _STEM and a[:_STEM] == b[:_STEM])
