"""Recall for someone with nothing remembered (and no shared knowledge) costs one indexed
lookup: the query is not embedded (no model load, no worker thread) and nothing is searched."""

from __future__ import annotations

from typing import Any

from bot.memory.service import MemoryService


async def test_no_items_no_query_embedding(memory: MemoryService, monkeypatch: Any) -> None:
    embedded: list[str] = []
    query_vector = memory.index.query_vector

    async def counting(query: str) -> Any:
        embedded.append(query)
        return await query_vector(query)

    monkeypatch.setattr(memory.index, "query_vector", counting)
    assert await memory.recall("alice", "where does she work?") == []
    await memory.save("bob", "bob works in munich")
    assert await memory.search("alice", "where does he work?") == []
    assert embedded == []
    # someone with items is searched as before, by word and by meaning
    hits = await memory.search("bob", "where does he work?")
    assert hits and hits[0].text.endswith("bob works in munich")
    assert embedded
