"""The second stage of a search, over the first round's candidates. A question that names
someone who said some of them is searched again without the name, and what that person
said ranks higher; optionally (pseudo-relevance feedback) the names in the best hits are
searched again with the question.

Why: many answers share nothing with the question but the person's name ("Which countries
has Maria planned trips to?" / "Maria: We booked flights to Lisbon"); searched as a word,
the name matches every turn that person said, the shortest best. And a later remark may
name only what an earlier one introduced ("Meet Pepper, my new greyhound" / "Pepper won a
ribbon"): the earlier one's names find it. Pure functions; the service runs the rounds.
"""

from __future__ import annotations

import dataclasses
import re

from bot.memory.search import MemoryHit
from bot.memory.text import STOPWORDS, WORD, speaker_of, without_speaker


def named_speakers(hits: list[MemoryHit], terms: list[str]) -> set[str]:
    """The speakers of `hits` whom the query (its `terms`) names."""
    asked = set(terms)
    return {s for h in hits if (s := speaker_of(h.text)) and set(WORD.findall(s)) <= asked}


def without_names(query: str, named: set[str]) -> str:
    """The query without the words of the speakers it names ("Maria's" included): a name
    matches every item that person said, and the shortest of them best, so it is matched
    as the speaker instead (`boost_speakers`)."""
    names = sorted({w for s in named for w in WORD.findall(s)}, key=len, reverse=True)
    if not names:
        return query
    pattern = r"\b(?:" + "|".join(map(re.escape, names)) + r")(?:['\u2019]s)?\b"
    return " ".join(re.sub(pattern, "", query, flags=re.IGNORECASE).split())


def boost_speakers(hits: list[MemoryHit], named: set[str], boost: float) -> list[MemoryHit]:
    """Hits said by someone the query names score `1 + boost` times more."""
    if boost <= 0 or not named:
        return hits
    out = [
        dataclasses.replace(h, score=h.score * (1.0 + boost)) if speaker_of(h.text) in named else h
        for h in hits
    ]
    out.sort(key=lambda h: -h.score)  # stable: ties keep their order
    return out


def _names(text: str) -> list[str]:
    """Capitalized words not at the start of a sentence: the names in a text ("Pepper",
    "Toronto", "Subaru"), lowercased."""
    out = []
    for m in re.finditer(r"(?<![.!?:]\s)(?<!^)\b([A-Z][a-z]+)", text):
        out.append(m.group(1).lower())
    return out


def feedback_query(query: str, hits: list[MemoryHit], max_terms: int) -> str:
    """The query followed by the names in `hits` that it does not already hold (a pet's,
    a place's, a make's; not the speakers'), the most repeated first, at most `max_terms`.
    Names are what ties a later remark to an earlier one ("Meet Pepper, my new greyhound" /
    "Pepper won a ribbon"); other words of a hit mostly find more chit-chat."""
    known = {w.lower() for w in WORD.findall(query)}
    speakers = {s for h in hits if (s := speaker_of(h.text))}
    counts: dict[str, int] = {}
    for hit in hits:
        body = without_speaker(hit.text)
        for word in dict.fromkeys(_names(body)):
            if word in known or word in speakers or word in STOPWORDS:
                continue
            counts[word] = counts.get(word, 0) + 1
    extra = sorted(counts, key=lambda w: -counts[w])[:max_terms]
    return " ".join([query, *extra]) if extra else query


def _normalized(hits: list[MemoryHit]) -> dict[int, float]:
    best = max((h.score for h in hits), default=0.0)
    return {h.chunk_id: h.score / best for h in hits} if best > 0 else {}


def merge_feedback(
    first: list[MemoryHit], second: list[MemoryHit], weight: float
) -> list[MemoryHit]:
    """First-round hits plus what the feedback round found: each score is the first round's
    (scaled to its best) plus `weight` times the second's; an item only the second round
    found enters with that share alone."""
    one, two = _normalized(first), _normalized(second)
    merged = {h.chunk_id: h for h in first}
    for h in second:
        merged.setdefault(h.chunk_id, h)
    scored = [
        dataclasses.replace(h, score=one.get(cid, 0.0) + weight * two.get(cid, 0.0))
        for cid, h in merged.items()
    ]
    scored.sort(key=lambda h: -h.score)
    return scored
