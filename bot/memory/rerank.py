"""The last stage of a search, over the best candidates: the turn answering a question hit,
how much of the question each candidate covers, and the days the question names.

Why each:
- the meaning of a reply often sits in the turn before it ("So how was the road trip?" /
  "Amazing! We hiked to a waterfall"): a hit that is a question pulls in the turn said
  just after it (`neighbour_hits`, off by default: it did not pay on the generated sets);
- a candidate found by one rare word of the question ranks as high as one that says what
  the question asks; coverage is the share of the question's distinct words a candidate
  holds (at half weight when only the turn before it does), each word itself or a word
  near it in the embedder's space ("greyhound" for "dog"), and lifts its score by up to
  `coverage_weight` times (the best `rerank_depth` candidates);
- a question that names a day ("What happened two days before 9 May 2023?") is answered
  by what was said or happened that day; neither BM25 over all its words nor a vector that
  cannot read dates ranks that first, so items holding the day rank above the rest
  (`date_boost`);
- the evidence of a question often sits around its best hits: when the two best hits were
  said in one session, its other turns among the candidates rank higher
  (`session_boost`); and when the turn after a best hit asks about it ("Which dish did you
  like best?"), the turn after that, the answer, adds a share of the hit's score
  (`follow_up_share`, over the best `follow_up_hits`);
- a turn that asks ("How long have you been married?") repeats the words of a question
  about it and holds no answer, which is in the turn after it ("Six years!"): it scores
  `question_weight` of its score, so what was said ranks above what was asked.
Pure functions and one small class; the service runs them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bot.memory.config import MemoryConfig
from bot.memory.dates import query_dates
from bot.memory.search import FusionWeights, MemoryHit, fuse
from bot.memory.text import (
    SEARCHED,
    STOPWORDS,
    WORD,
    fts_match,
    query_terms,
    same_word,
    without_speaker,
)
from bot.store.memory import ChunkRow, MemoryRepo

#: word cosines below LOW are unrelated, above HIGH the same thing (static embeddings put
#: "dog" / "coffee" near 0.0, "dog" / "greyhound" near 0.5)
_LOW, _HIGH = 0.1, 0.5
#: a word of the question found only in the turn before counts this much
_CONTEXT_SHARE = 0.5
#: neighbouring turns are turns said within this many seconds of each other
NEIGHBOUR_WINDOW_S = 600.0
_WORD_CACHE = 4096
#: a question that follows up on what was said holds at least this many content words
_FOLLOW_UP_WORDS = 3

Embed = Callable[[list[str]], Awaitable[list[list[float]] | None]]


def content_words(text: str) -> list[str]:
    """The distinct words of a text that carry meaning, lowercased, without the speaker in
    front."""
    words = WORD.findall(without_speaker(text).lower())
    return list(dict.fromkeys(w for w in words if w not in STOPWORDS))


def boost_dated(hits: list[MemoryHit], dated: Sequence[MemoryHit], boost: float) -> list[MemoryHit]:
    """`dated` holds the items with a day the question names: each scores `boost` times the
    best score more than it had (entering with that alone when it was not a candidate)."""
    if boost <= 0 or not dated:
        return hits
    best = max((h.score for h in hits), default=1.0) or 1.0
    ids = {h.chunk_id for h in dated}
    merged = {h.chunk_id: h for h in hits}
    for h in dated:
        merged.setdefault(h.chunk_id, dataclasses.replace(h, score=0.0))
    out = [
        dataclasses.replace(h, score=h.score + boost * best) if cid in ids else h
        for cid, h in merged.items()
    ]
    out.sort(key=lambda h: -h.score)
    return out


def demote_questions(hits: list[MemoryHit], weight: float) -> list[MemoryHit]:
    """Hits whose text asks a question (ends with "?") score `weight` times their score."""
    if weight >= 1.0 or not hits:
        return hits
    out = [
        dataclasses.replace(h, score=h.score * weight) if h.text.rstrip().endswith("?") else h
        for h in hits
    ]
    out.sort(key=lambda h: -h.score)
    return out


def hit_of(row: ChunkRow, score: float) -> MemoryHit:
    """A turn fetched next to a hit, as a hit of its own."""
    return MemoryHit(
        row.item_id, row.chunk_id, row.owner, row.kind, row.text, row.source,
        score, row.created_at, row.updated_at, context=row.context,
    )  # fmt: skip


def with_replies(
    hits: list[MemoryHit], after: dict[int, ChunkRow], share: float
) -> list[MemoryHit]:
    """A hit that is a question pulls in the turn said after it (what answers it), with
    `share` of its score, or that turn keeps its own score when higher."""
    if share <= 0 or not after:
        return hits
    pulled = [
        (hit, after[hit.chunk_id])
        for hit in hits
        if hit.chunk_id in after and hit.text.rstrip().endswith("?")
    ]
    return pull_in(hits, pulled, share, add=False)


def pull_in(
    hits: list[MemoryHit], pulled: list[tuple[MemoryHit, ChunkRow]], share: float, *, add: bool
) -> list[MemoryHit]:
    """Each (hit, row): the row gets `share` of the hit's score (of its best such hit),
    added to its own score (`add`) or kept when above it, entering the hits with it when
    it was not one; best first."""
    rows: dict[int, ChunkRow] = {}
    pull: dict[int, float] = {}
    for hit, row in pulled:
        rows[row.chunk_id] = row
        pull[row.chunk_id] = max(pull.get(row.chunk_id, 0.0), share * hit.score)
    merged = {h.chunk_id: h for h in hits}
    for chunk_id, score in pull.items():
        known = merged.get(chunk_id)
        if known is None:
            merged[chunk_id] = hit_of(rows[chunk_id], score)
        elif add or known.score < score:
            total = known.score + score if add else score
            merged[chunk_id] = dataclasses.replace(known, score=total)
    out = list(merged.values())
    out.sort(key=lambda h: -h.score)
    return out


def boost_session(
    hits: list[MemoryHit], depth: int, boost: float, window_s: float
) -> list[MemoryHit]:
    """When the two best hits were said in one session (the first `depth` hits grouped by
    being said within `window_s` of the one before), that session's hits among them score
    `1 + boost` times more; the rest keep their order after them."""
    if boost <= 0 or depth < 2 or len(hits) < 2:
        return hits
    top = hits[:depth]
    session: dict[int, int] = {}
    number, last = 0, None
    for hit in sorted(top, key=lambda h: h.created_at):
        if last is not None and hit.created_at - last > window_s:
            number += 1
        session[hit.chunk_id] = number
        last = hit.created_at
    chosen = session[top[0].chunk_id]
    if session[top[1].chunk_id] != chosen:
        return hits  # the best hits disagree: no session stands out
    out = [
        dataclasses.replace(h, score=h.score * (1.0 + boost))
        if session[h.chunk_id] == chosen
        else h
        for h in top
    ]
    out.sort(key=lambda h: -h.score)
    floor = min(h.score for h in out)
    return out + [dataclasses.replace(h, score=min(floor, h.score) - 1e-9) for h in hits[depth:]]


class WordVectors:
    """Unit vectors of single words from the active embedder, kept for the next search."""

    def __init__(self, embed: Embed) -> None:
        self._embed = embed
        self._cache: OrderedDict[str, Any] = OrderedDict()

    async def get(self, words: list[str]) -> dict[str, Any] | None:
        """numpy vectors by word; None when there is no embedder (or no numpy)."""
        try:
            import numpy as np
        except ImportError:
            return None
        # Vectors are collected as found: a full cache evicts its oldest words, which may be
        # some of these, and another search may evict while this one awaits the embedder.
        found: dict[str, Any] = {}
        missing: list[str] = []
        for w in words:
            known = self._cache.get(w)
            if known is None:
                missing.append(w)
            else:
                self._cache.move_to_end(w)
                found[w] = known
        if missing:
            vectors = await self._embed(missing)
            if vectors is None:
                return None
            for word, vector in zip(missing, vectors, strict=True):
                v = np.asarray(vector, dtype=np.float32)
                norm = float(np.linalg.norm(v))
                found[word] = self._cache[word] = v / norm if norm else v
            while len(self._cache) > _WORD_CACHE:
                self._cache.popitem(last=False)
        return {w: found[w] for w in words}


def coverage(
    terms: list[str], hits: list[MemoryHit], vectors: dict[str, Any] | None
) -> list[float]:
    """For each hit, the share of `terms` it holds: 1 for the word itself, less for a word
    near it in the embedder's space, half of that when only the turn before holds it."""
    if not terms or not hits:
        return [0.0] * len(hits)
    texts = [(content_words(h.text), content_words(h.context)) for h in hits]
    if vectors is None:
        return [
            sum(
                1.0 if any(same_word(t, w) for w in own) else
                _CONTEXT_SHARE if any(same_word(t, w) for w in before) else 0.0
                for t in terms
            ) / len(terms)
            for own, before in texts
        ]  # fmt: skip
    import numpy as np

    words = list(dict.fromkeys(w for own, before in texts for w in (*own, *before)))
    column = {w: i for i, w in enumerate(words)}
    dim = len(next(iter(vectors.values())))
    zero = np.zeros(dim, dtype=np.float32)
    q = np.stack([vectors.get(t, zero) for t in terms])
    u = np.stack([vectors.get(w, zero) for w in words]) if words else np.zeros((0, dim))
    near = np.clip((q @ u.T - _LOW) / (_HIGH - _LOW), 0.0, 1.0)
    for i, t in enumerate(terms):
        for w, j in column.items():
            if same_word(t, w):
                near[i, j] = 1.0
    out = []
    for own, before in texts:
        best = np.zeros(len(terms), dtype=np.float32)
        if own:
            best = near[:, [column[w] for w in own]].max(axis=1)
        if before:
            best = np.maximum(
                best, _CONTEXT_SHARE * near[:, [column[w] for w in before]].max(axis=1)
            )
        out.append(float(best.mean()))
    return out


def rerank(hits: list[MemoryHit], covered: list[float], weight: float) -> list[MemoryHit]:
    """The first len(covered) candidates by their score (scaled to the best) times
    1 + `weight` x their coverage; the rest keep their order after them."""
    if weight <= 0 or not hits:
        return hits
    best = max(h.score for h in hits[: len(covered)]) or 1.0
    top = [
        dataclasses.replace(h, score=h.score / best * (1.0 + weight * c))
        for h, c in zip(hits, covered, strict=False)
    ]
    top.sort(key=lambda h: -h.score)
    floor = min((h.score for h in top), default=0.0)
    rest = [
        dataclasses.replace(h, score=min(floor, h.score / best) - 1e-9)
        for h in hits[len(covered) :]
    ]
    return top + rest


_DATED = FusionWeights(method="score")
#: "7 May 2023", "7 May" (any year), "the week of 1 May 2023": a day, or a week's
_A_DAY = re.compile(r"\d{1,2} [A-Za-z]+( \d{4})?$")


async def last_stage(
    repo: MemoryRepo,
    words: WordVectors,
    config: MemoryConfig,
    owners: list[str],
    asked: str,
    hits: list[MemoryHit],
    now: float,
) -> list[MemoryHit]:
    """The turns answering question hits, coverage, the days the question names, then
    questions below what was said, and the session of the two best hits,
    over `hits` (best first) of the question `asked` (the speakers it names taken out).
    The day comes last: on a question naming one, it decides over how many words match."""
    if config.neighbour_hits and hits:
        asked_of = [h.chunk_id for h in hits[: config.neighbour_hits]]
        after = await repo.next_turns(asked_of, owners, NEIGHBOUR_WINDOW_S, now)
        hits = with_replies(hits, after, config.neighbour_weight)
    if config.coverage_weight and config.rerank_depth and hits:
        terms = query_terms(asked)
        top = hits[: config.rerank_depth]
        needed = list(dict.fromkeys([*terms, *(w for h in top for w in _words_of(h))]))
        vectors = await words.get(needed)
        hits = rerank(hits, coverage(terms, top, vectors), config.coverage_weight)
    if config.date_boost:
        today = dt.datetime.fromtimestamp(now, dt.UTC).date()
        for day in query_dates(asked, today):
            if not _A_DAY.search(day):
                continue  # a year or a month holds too many items to rank by
            match = fts_match(query_terms(day), owners, require_all=True, columns=SEARCHED)
            found = await repo.search(owners, match, None, None, len(hits) or 1, now, 1.0)
            # the day's words in that order, in what was said or when: a backend may have
            # matched any of them
            dated = [h for h in fuse(found, _DATED, len(hits) or 1, now) if _holds_day(h, day)]
            hits = boost_dated(hits, dated, config.date_boost)
    hits = demote_questions(hits, config.question_weight)
    return await around_best_hits(repo, config, owners, hits, now)


async def around_best_hits(
    repo: MemoryRepo, config: MemoryConfig, owners: list[str], hits: list[MemoryHit], now: float
) -> list[MemoryHit]:
    """What was said around the best hits: the session of the two best, then the answers to
    a question asked right after one of the best."""
    hits = boost_session(hits, config.rerank_depth, config.session_boost, NEIGHBOUR_WINDOW_S)
    if config.follow_up_share <= 0 or not config.follow_up_hits or not hits:
        return hits
    best = [h.chunk_id for h in hits[: config.follow_up_hits]]
    following = await repo.following_turns(best, owners, 2, NEIGHBOUR_WINDOW_S, now)
    answers = {
        cid: rows[1]
        for cid, rows in following.items()
        if len(rows) == 2 and asks_follow_up(rows[0].text)
    }
    return boost_follow_ups(hits, answers, config.follow_up_share)


def asks_follow_up(text: str) -> bool:
    """A turn that asks about what was just said ("Which dish did you like best?"), not
    a reaction ("Wow, really?"): a question with at least three words that carry meaning."""
    return text.rstrip().endswith("?") and len(content_words(text)) >= _FOLLOW_UP_WORDS


def boost_follow_ups(
    hits: list[MemoryHit], answers: dict[int, ChunkRow], share: float
) -> list[MemoryHit]:
    """`answers` maps a hit to the turn answering the question asked right after it: that
    turn adds `share` of the hit's score (of its best such hit) to its own, entering with
    that alone when it was not a candidate."""
    if share <= 0 or not answers:
        return hits
    pulled = [(hit, answers[hit.chunk_id]) for hit in hits if hit.chunk_id in answers]
    return pull_in(hits, pulled, share, add=True)


def _holds_day(hit: MemoryHit, day: str) -> bool:
    pattern = r"\b" + r"\s+".join(map(re.escape, day.split())) + r"\b"
    return re.search(pattern, f"{hit.text} {hit.context}", re.IGNORECASE) is not None


def _words_of(hit: MemoryHit) -> list[str]:
    return [*content_words(hit.text), *content_words(hit.context)]
