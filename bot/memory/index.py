"""The vector side of memory: which embedder the index is built with, the embedding cache,
vectors for new chunks and for queries, and the backfill and reindex that fill the index.

Keyword search never waits on any of this: whenever no embedder is usable, or the index is
in another model's space, `model` is None and memory is searched by keyword only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from bot.memory.embedder_chain import EmbedderChain
from bot.memory.embedders import is_zero
from bot.memory.links import MemoryRequestError
from bot.memory.text import chunk_text, embedding_input, text_hash
from bot.progress import ProgressSink
from bot.store import sqlite
from bot.store.memory import NewChunk
from bot.store.memory_vectors import VectorRepo, pack_vector

log = logging.getLogger("decapod.memory")

_EMBED_BATCH = 64
_QUERY_CACHE = 128


class NoEmbedder(MemoryRequestError):
    """No embedder is configured, or none answered: there is no vector index to build."""


class VectorIndex:
    def __init__(self, repo: VectorRepo, chain: EmbedderChain) -> None:
        self.repo = repo
        self.chain = chain
        #: why vector search cannot run on this SQLite at all (None: it can)
        usable = repo.store.vectors_available
        self.vec_error = None if usable else (sqlite.info().vec_error or "")
        self._index_model: str | None = None  # set once the vector table matches the embedder
        self._queries: OrderedDict[tuple[str, str], bytes | None] = OrderedDict()
        #: set when chunks may wait for a vector; the backfill loop waits on it
        self.wake = asyncio.Event()
        self._backfilling = asyncio.Lock()

    @property
    def model(self) -> str | None:
        """The model whose vectors can be used right now, or None (keyword-only)."""
        active = self.chain.active
        if active is None or active.name != self._index_model or not self.chain.usable:
            return None
        return active.name

    def stored_without_vectors(self, model: str | None) -> None:
        """Chunks were just stored unembedded (`model` None): the backfill embeds them once
        an index exists."""
        if model is None and self._index_model is not None:
            self.wake.set()

    async def select(self) -> None:
        """Pick the first embedder that answers; a vector table of another model or size is
        rebuilt for it."""
        embedder = await self.chain.select()
        if embedder is None:
            return
        async with self._backfilling:
            recorded = await self.repo.vector_model()
            if recorded != (embedder.name, embedder.dim):
                log.warning(
                    "rebuilding the memory vector index for %s (dim %d); it was %s",
                    embedder.name,
                    embedder.dim,
                    recorded[0] if recorded else "empty",
                )
                await self.repo.reset_vectors(embedder.name, embedder.dim)
            self._index_model = embedder.name
        self.wake.set()

    # embedding ---------------------------------------------------------------------------------
    async def _embed_cached(self, texts: list[str], hashes: list[str]) -> list[bytes] | None:
        """float32 vectors (b"" for texts without any known word), through the cache."""
        model = self.model
        if model is None:
            return None
        found = await self.repo.cached_vectors(model, hashes)
        missing = [i for i, h in enumerate(hashes) if h not in found]
        if missing:
            fresh = await self.chain.embed([texts[i] for i in missing])
            if fresh is None:
                return None
            new = [
                (hashes[i], b"" if is_zero(v) else pack_vector(v))
                for i, v in zip(missing, fresh, strict=True)
            ]
            await self.repo.cache_vectors(model, new)
            found.update(new)
        return [found[h] for h in hashes]

    async def chunks(
        self, text: str, words: int, overlap: int, context: str = ""
    ) -> tuple[list[NewChunk], str | None]:
        """`text` cut into chunks, with their vectors when an embedder is usable; returns the
        chunks and the model their vectors are in (None: stored without, embedded later)."""
        pieces = chunk_text(text, words, overlap)
        inputs = [embedding_input(p.text) for p in pieces]
        hashes = [text_hash(i) for i in inputs]  # the cache's key: what is embedded
        model = self.model
        blobs = await self._embed_cached(inputs, hashes) if model else None
        if blobs is None:
            return [
                NewChunk(p.seq, p.text, h, context=context)
                for p, h in zip(pieces, hashes, strict=True)
            ], None
        return [
            NewChunk(p.seq, p.text, h, b or None, context)
            for p, h, b in zip(pieces, hashes, blobs, strict=True)
        ], model

    async def query_vector(self, query: str) -> tuple[bytes | None, str | None]:
        model = self.model
        if model is None or not query.strip():
            return None, None
        key = (model, query)
        if key in self._queries:
            self._queries.move_to_end(key)
            return self._queries[key], model
        vectors = await self.chain.embed([embedding_input(query)])
        if vectors is None:
            return None, None
        blob = None if is_zero(vectors[0]) else pack_vector(vectors[0])
        self._queries[key] = blob
        if len(self._queries) > _QUERY_CACHE:
            self._queries.popitem(last=False)
        return blob, model

    # filling the index ---------------------------------------------------------------------------
    async def backfill(self) -> int:
        """Embed chunks stored without a vector (saved while the embedder was down, or
        before a reindex). Returns how many were done."""
        async with self._backfilling:
            return await self._backfill_locked()

    async def _backfill_locked(self, progress: ProgressSink | None = None) -> int:
        done = 0
        while (model := self.model) is not None:
            pending = await self.repo.pending_chunks(_EMBED_BATCH)
            if not pending:
                break
            inputs = [embedding_input(p[1]) for p in pending]
            blobs = await self._embed_cached(inputs, [p[2] for p in pending])
            if blobs is None:
                break
            # each batch is its own transaction: a reindex stopped between two batches leaves
            # a usable index, the rest of the chunks waiting for their vectors
            stored = await self.repo.store_vectors(
                model, [(p[0], b or None) for p, b in zip(pending, blobs, strict=True)]
            )
            if stored == 0:
                break
            done += stored
            if progress is not None:
                progress.advance(stored)
        return done

    async def backfill_loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            try:
                await self.backfill()
            except Exception:
                log.exception("memory backfill failed")

    async def reindex(self, *, resume: bool = False, progress: ProgressSink | None = None) -> int:
        """Rebuild the vector index with the first embedder that answers; returns the number
        of chunks embedded. With `resume`, an index already made for that embedder keeps its
        vectors and only the chunks still without one are embedded (what an interrupted
        reindex left). Raises when there is no vector search to rebuild."""
        if self.vec_error is not None:
            raise MemoryRequestError(f"vector search is unavailable: {self.vec_error}")
        embedder = await self.chain.select()
        if embedder is None:
            tried = "; ".join(self.chain.status().failures)
            raise NoEmbedder(
                f"no embedder answered ({tried})"
                if tried
                else "no embedder is configured ([memory] embedders is empty)"
            )
        async with self._backfilling:  # the background backfill must not take the work
            if not resume or await self.repo.vector_model() != (embedder.name, embedder.dim):
                await self.repo.reset_vectors(embedder.name, embedder.dim)
            self._index_model = embedder.name
            await self.repo.prune_cache()
            if progress is not None:
                progress.begin(await self.repo.count_pending_chunks())
            return await self._backfill_locked(progress)
