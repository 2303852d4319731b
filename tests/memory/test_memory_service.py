"""MemoryService end to end on a real SQLite file with FTS5 and sqlite-vec."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.memory.search import render_recall as render
from bot.memory.service import MemoryRequestError, MemoryService
from bot.memory.text import embedding_input, estimate_tokens, text_hash
from bot.store import Store
from tests.deps import REDACT
from tests.memory.conftest import build_tiny_model, memory_config


async def _rows(store: Store, sql: str, *params: object) -> list[tuple[object, ...]]:
    return await store.read(lambda c: c.execute(sql, params).fetchall())


async def test_hybrid_finds_by_meaning_and_by_word(memory: MemoryService) -> None:
    await memory.save("alice", "my puppy is called Rex", kind="fact")
    await memory.save("alice", "alice drinks matcha on monday", kind="preference")
    await memory.save("alice", "alice works in munich")
    assert memory.status().mode == "hybrid"
    by_word = await memory.search("alice", "where does she work?", mode="keyword")
    assert by_word[0].text == "alice works in munich"
    assert await memory.search("alice", "hound", mode="keyword") == []
    by_meaning = await memory.search("alice", "hound", mode="vector")
    assert by_meaning[0].text == "my puppy is called Rex"
    hybrid = await memory.search("alice", "hound")
    assert hybrid[0].text == "my puppy is called Rex" and hybrid[0].vector_rank == 1


async def test_saving_the_same_text_twice_keeps_one_item(memory: MemoryService) -> None:
    first = await memory.save("alice", "likes tea")
    assert await memory.save("alice", "likes tea") == first
    assert await memory.save("bob", "likes tea") != first
    assert await memory.count("alice") == 1


async def test_redaction_and_refusals(store: Store, tiny_model: Path, tmp_path: Path) -> None:
    service = MemoryService(
        store, memory_config(tiny_model), tmp_path, redact=lambda t: t.replace("sk-123", "[key]")
    )
    item = await service.save("alice", "my key is sk-123")
    assert await _rows(store, "SELECT text FROM memory_items WHERE id = ?", item) == [
        ("my key is [key]",)
    ]
    for person in ("", "shared"):
        with pytest.raises(MemoryRequestError):
            await service.save(person, "x")
    with pytest.raises(MemoryRequestError):
        await service.save("alice", "x", kind="knowledge")
    with pytest.raises(MemoryRequestError):
        await service.save("alice", "   ")
    with pytest.raises(TypeError, match="redact"):
        MemoryService(store, memory_config(tiny_model), tmp_path)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="redactor"):
        MemoryService(store, memory_config(tiny_model), tmp_path, redact=None)  # type: ignore[arg-type]


async def test_forget_really_deletes(store: Store, memory: MemoryService) -> None:
    secret = "alice hides zebrasecret in berlin"
    item = await memory.save("alice", secret)
    await memory.save("alice", "alice plays banjo")
    await memory.save("bob", secret)  # same text, another person: must survive
    [(chunk,)] = await _rows(store, "SELECT id FROM memory_chunks WHERE item_id = ?", item)
    assert await _rows(store, "SELECT chunk_id FROM memory_vec WHERE chunk_id = ?", chunk)

    gone = await memory.forget("alice", matching="zebrasecret berlin")
    assert [r.id for r in gone] == [item]
    assert await _rows(store, "SELECT 1 FROM memory_items WHERE id = ?", item) == []
    assert await _rows(store, "SELECT 1 FROM memory_chunks WHERE id = ?", chunk) == []
    assert await _rows(store, "SELECT chunk_id FROM memory_vec WHERE chunk_id = ?", chunk) == []
    fts = await _rows(store, "SELECT rowid FROM memory_fts WHERE memory_fts MATCH 'zebrasecret'")
    assert len(fts) == 1  # bob's copy only
    await store.write(
        lambda c: c.execute("INSERT INTO memory_fts(memory_fts) VALUES ('integrity-check')")
    )
    assert await _rows(
        store,
        "SELECT 1 FROM memory_embed_cache WHERE text_hash = ?",
        text_hash(embedding_input(secret)),
    )  # still bob's
    assert [h.text for h in await memory.search("alice", "zebrasecret berlin")] != [secret]

    await memory.forget("bob", everything=True)
    await memory.forget("alice", everything=True)
    for table in ("memory_items", "memory_chunks", "memory_vec", "memory_embed_cache"):
        assert await _rows(store, f"SELECT count(*) FROM {table}") == [(0,)]
    await store.write(
        lambda c: c.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS fts_terms USING fts5vocab(memory_fts, 'row')"
        )
    )
    assert await _rows(store, "SELECT * FROM fts_terms WHERE term = 'zebrasecret'") == []


async def test_expired_items_are_never_returned(memory: MemoryService) -> None:
    await memory.save("alice", "temporary matcha note", expires_at=time.time() - 1)
    await memory.save("alice", "lasting matcha note")
    assert [h.text for h in await memory.search("alice", "matcha")] == ["lasting matcha note"]
    assert await memory.repo.prune_expired(time.time()) == 1
    assert await memory.count("alice") == 1


async def test_recall_fits_the_budget(memory: MemoryService) -> None:
    for i in range(40):
        await memory.save("alice", f"alice fact {i}: " + "tango lima " * (i % 7 + 1))
    for budget in (0, 20, 60, 200, 2000):
        hits = await memory.recall("alice", "tango", budget_tokens=budget)
        assert estimate_tokens(render(hits)) <= budget
        assert (not hits) == (budget <= 20)
    assert len(await memory.recall("alice", "tango")) <= memory.config.recall_limit


async def test_the_last_stage_reads_word_vectors_from_the_active_model(
    memory: MemoryService,
) -> None:
    """Coverage counts words near the question's (bot/memory/rerank.py) by the vectors of
    the model the index uses: synonyms of the tiny model are near, other words are not."""
    vectors = await memory.retrieval.words.get(["doctor", "physician", "tea"])
    assert vectors is not None
    assert float(vectors["doctor"] @ vectors["physician"]) > 0.8
    assert float(vectors["doctor"] @ vectors["tea"]) < 0.5


async def test_keyword_only_without_embedders(store: Store, tmp_path: Path) -> None:
    service = MemoryService(store, memory_config(None), tmp_path, redact=REDACT)
    await service.start(watch=False)
    await service.wait_ready()
    try:
        assert service.status().mode == "keyword-only"
        await service.save("alice", "alice plays the ukulele")
        assert [h.text for h in await service.search("alice", "ukulele")] == [
            "alice plays the ukulele"
        ]
        assert await service.search("alice", "banjo") == []
        with pytest.raises(MemoryRequestError):
            await service.reindex()
    finally:
        await service.stop()


async def test_keyword_only_without_sqlite_vec(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.store import sqlite

    monkeypatch.setattr(sqlite, "_vec_error", lambda: "sqlite-vec missing (test)")
    async with Store(tmp_path / "db.sqlite") as store:
        service = MemoryService(store, memory_config(tiny_model), tmp_path, redact=REDACT)
        await service.start(watch=False)
        await service.wait_ready()
        try:
            status = service.status()
            assert status.mode == "keyword-only" and not status.vector_extension
            item = await service.save("alice", "alice visits hamburg")
            assert [h.item_id for h in await service.search("alice", "hamburg")] == [item]
            assert len(await service.forget("alice", everything=True)) == 1
        finally:
            await service.stop()


async def test_model_change_rebuilds_the_vector_index(tmp_path: Path, tiny_model: Path) -> None:
    other = build_tiny_model(tmp_path / "tiny8", dim=8, seed=3)
    async with Store(tmp_path / "db.sqlite") as store:
        first = MemoryService(store, memory_config(tiny_model), tmp_path, redact=REDACT)
        await first.start(watch=False)
        await first.wait_ready()
        await first.save("alice", "my puppy sleeps a lot")
        await first.save("alice", "alice drinks chai")
        await first.stop()
        assert await _rows(store, "SELECT model, dim FROM memory_embedding") == [
            ("model2vec:tiny", 16)
        ]

        second = MemoryService(store, memory_config(other), tmp_path, redact=REDACT)
        await second.start(watch=False)
        await second.wait_ready()
        try:
            await second.backfill()
            assert await _rows(store, "SELECT model, dim FROM memory_embedding") == [
                ("model2vec:tiny8", 8)
            ]
            assert await _rows(store, "SELECT count(*) FROM memory_chunks WHERE embedded = 0") == [
                (0,)
            ]
            hits = await second.search("alice", "hound", mode="vector")
            assert hits[0].text == "my puppy sleeps a lot"
            assert await second.reindex() == 2
        finally:
            await second.stop()
