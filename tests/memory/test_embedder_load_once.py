"""A local embedding model is loaded once, even when the first embeddings come in several
worker threads at once (a burst of first recalls after a start)."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.memory.static_embedders import WordLlamaEmbedder


class _CountingWordLlama(WordLlamaEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    def load(self) -> None:
        self.loads += 1
        time.sleep(0.05)  # a load takes a while: the other threads arrive meanwhile
        super().load()


async def test_concurrent_first_embeddings_load_the_model_once() -> None:
    embedder = _CountingWordLlama()
    try:
        embedder.check()
    except Exception as exc:  # the memory extra is not installed
        pytest.skip(str(exc))
    vectors = await asyncio.gather(*(embedder.embed([f"hello {i}"]) for i in range(6)))
    assert embedder.loads == 1
    assert all(len(v[0]) == embedder.dim for v in vectors)
