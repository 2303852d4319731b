"""Cutting a long answer into messages a platform takes: at a paragraph, a line or a word
where one is near the limit, with a code block closed at the cut and opened again after it.
Each piece keeps the span of the original text it shows, so a retry can send only the rest."""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = "```"
_MAX_LANG = 20  # a language tag; a longer word after ``` is text, not a tag


@dataclass(frozen=True, slots=True)
class Chunk:
    """One message's text, and the span of the source text it shows: `start` and `end` are
    offsets in the source; the first `lead` characters of `text` are not from the source
    (a code fence reopened at the top of a chunk that continues a code block)."""

    text: str
    start: int
    end: int
    lead: int = 0

    def source(self, offset: int) -> int:
        """Where in the source the character at `offset` in `text` is (its end for one past
        the last, the start for one of the lead)."""
        return self.start + min(max(offset - self.lead, 0), self.end - self.start)

    def part(self, inner: Chunk) -> Chunk:
        """`inner`, a chunk cut from this chunk's text, with its span in this chunk's source."""
        lead = inner.lead + max(self.lead - inner.start, 0)
        return Chunk(inner.text, self.source(inner.start), self.source(inner.end), lead)


def split_text(text: str, limit: int, whole: re.Pattern[str] | None = None) -> list[Chunk]:
    """Split at paragraph, then line, then word boundaries; never inside a code fence
    without closing it at the end of one chunk and reopening it at the start of the next.
    Without `whole`, a chunk's boundaries depend only on the text before them, so while a
    text grows, every chunk but the last stays as it is. `whole`: what a cut must not land
    in (Slack's `&amp;` and `<url|label>`): the cut moves back before it, unless it starts
    the chunk; a span is matched with the text after the cut, so later text can move it."""
    if limit < 16:
        raise ValueError("chunk limit too small")
    chunks: list[Chunk] = []
    pos, lead, rest = 0, "", text  # rest = text[pos:], shown after `lead`
    while len(lead) + len(rest) > limit:
        body = lead + rest
        budget = limit - len(_FENCE) - 1  # room to close a fence we split
        cut = _best_cut(body, budget)
        if whole is not None:
            cut = _before_unfinished(body, cut, whole)
        head = body[:cut].rstrip()
        consumed = max(cut - len(lead), 0)
        if not consumed and lead:  # a reopened fence that leaves no room: show it plain
            lead = ""
            continue
        tail = rest[consumed:].lstrip("\n")
        end = pos + consumed
        next_lead = ""
        if head.count(_FENCE) % 2 == 1:
            next_lead = f"{_FENCE}{_open_fence_lang(head)}\n"
            head += "\n" + _FENCE
        if head:
            chunks.append(Chunk(head, pos, end, len(lead)))
        pos, lead, rest = len(text) - len(tail), next_lead, tail
    if rest.strip() or not chunks:
        chunks.append(Chunk(lead + rest, pos, len(text), len(lead)))
    return chunks


def chunk_text(text: str, limit: int) -> list[str]:
    return [chunk.text for chunk in split_text(text, limit)]


def _best_cut(text: str, budget: int) -> int:
    window = text[:budget]
    for sep in ("\n\n", "\n", " "):
        pos = window.rfind(sep)
        if pos > budget // 3:
            return pos + len(sep)
    return budget


def _before_unfinished(text: str, cut: int, whole: re.Pattern[str]) -> int:
    """`cut`, or the start of the `whole` match it would land in (when that is not 0)."""
    for found in whole.finditer(text):
        if found.start() >= cut:
            break
        if cut < found.end():
            return found.start() or cut
    return cut


def _open_fence_lang(head: str) -> str:
    line = head[head.rfind(_FENCE) + len(_FENCE) :].split("\n", 1)[0].strip()
    return line if line.isidentifier() and len(line) <= _MAX_LANG else ""
