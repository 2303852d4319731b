"""Searching memory: the steps from a question to the best items of some owners.

One round finds keyword (FTS) and vector candidates of a question and fuses them
(bot/memory/search.py); a second round asks again without a name the question holds
(who was found) and with words the best hits add (feedback.py); the last stage reorders
by the days named, the question's words covered, the session of the best hits and a
follow-up asked right after one (rerank.py).
"""

from __future__ import annotations

import time
from typing import Literal

from bot.memory.config import MemoryConfig
from bot.memory.embedder_chain import EmbedderChain
from bot.memory.feedback import (
    boost_speakers,
    feedback_query,
    merge_feedback,
    named_speakers,
    without_names,
)
from bot.memory.index import VectorIndex
from bot.memory.rerank import WordVectors, last_stage
from bot.memory.search import FusionWeights, MemoryHit, fuse, keyword_shares
from bot.memory.text import SEARCHED, fts_match, query_terms, with_dates
from bot.store.memory import MemoryRepo

SearchMode = Literal["hybrid", "keyword", "vector"]


class Retrieval:
    """The search pipeline over one repository and its vector index."""

    def __init__(
        self, repo: MemoryRepo, config: MemoryConfig, index: VectorIndex, chain: EmbedderChain
    ) -> None:
        self.repo = repo
        self.index = index
        self.chain = chain
        self.words = WordVectors(self._embed_words)
        self.use(config)

    def use(self, config: MemoryConfig) -> None:
        """Search by `config` from now on: its settings and the fusion weights made of them
        change together."""
        self.config = config
        self.weights = FusionWeights.from_config(config)

    async def search(
        self, owners: list[str], query: str, limit: int, mode: SearchMode
    ) -> list[MemoryHit]:
        """The owners' best matching items, best first: keyword and vector candidates
        fused, then the second stage (bot/memory/feedback.py) and the last (rerank.py)."""
        if not await self.repo.any_items(owners):
            # nothing to find (someone new, no shared knowledge): no query embedding, which
            # would load the model and take a worker thread per turn, and no search
            return []
        now = time.time()
        pool = max(limit * 4, 20)
        hits = await self._round(owners, query, pool, now, mode)
        cfg = self.config
        terms = query_terms(query)
        named = named_speakers(hits, terms) if cfg.speaker_boost else set()
        asked = without_names(query, named) if named else query
        if asked != query and query_terms(asked) and query_terms(asked) != terms:
            # the name found who; the rest of the question finds what they said
            hits = merge_feedback(
                await self._round(owners, asked, pool, now, mode), hits, cfg.named_weight
            )
        else:
            asked = query
        hits = boost_speakers(hits, named, cfg.speaker_boost)
        if cfg.feedback_hits and hits:
            expanded = feedback_query(asked, hits[: cfg.feedback_hits], cfg.feedback_terms)
            if expanded != asked:
                second = await self._round(owners, expanded, pool, now, mode)
                hits = merge_feedback(
                    hits, boost_speakers(second, named, cfg.speaker_boost), cfg.feedback_weight
                )
        hits = await last_stage(self.repo, self.words, cfg, owners, asked, hits, now)
        return hits[:limit]

    async def _embed_words(self, words: list[str]) -> list[list[float]] | None:
        """Vectors of single words for the last stage, in the index's space (None: none)."""
        return await self.chain.embed(words) if self.index.model is not None else None

    async def _round(
        self, owners: list[str], query: str, limit: int, now: float, mode: SearchMode
    ) -> list[MemoryHit]:
        """One retrieval: keyword and vector candidates of `query`, fused."""
        terms = query_terms(with_dates(query, now))
        match = fts_match(terms, owners, columns=SEARCHED) if mode != "vector" else None
        blob, model = (None, None) if mode == "keyword" else await self.index.query_vector(query)
        found = await self.repo.search(
            owners, match, blob, model, limit, now, self.config.context_weight
        )
        weights = self.weights
        shares = keyword_shares(found, query_terms(query)) if weights.trusts_keywords else {}
        return fuse(found, weights, limit, now, shares)
