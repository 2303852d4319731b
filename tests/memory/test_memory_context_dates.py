"""What an item keeps at index time (speaker, the turn it answers, when it was said, relative
dates resolved), questions that name dates, and score fusion over keyword and vector lists."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bot.memory.dates import query_dates, resolve_relative
from bot.memory.search import FusionWeights, MemoryHit, fuse, merge_phrasings
from bot.memory.service import MemoryRequestError, MemoryService
from bot.store import Store, migration_runner, migrations, sqlite
from bot.store.memory import ChunkRow, SearchRows, owner_tag
from tests.deps import REDACT
from tests.memory.conftest import memory_config

MONDAY = dt.date(2023, 5, 8)
SAID = dt.datetime(2023, 5, 8, 13, 56, tzinfo=dt.UTC).timestamp()


def test_relative_dates_are_resolved_against_the_day_said() -> None:
    cases = {
        "I fell yesterday.": "I fell yesterday (7 May 2023).",
        "we met two days ago": "we met two days ago (6 May 2023)",
        "saw them last Saturday": "saw them last Saturday (6 May 2023)",
        "last weekend was fun": "last weekend (the weekend of 6 May 2023) was fun",
        "last week was rough": "last week (the week of 1 May 2023) was rough",
        "moved a couple of months ago": "moved a couple of months ago (March 2023)",
        "two weeks ago": "two weeks ago (24 April 2023)",
        "next Friday then": "next Friday (12 May 2023) then",
        "nothing relative here": "nothing relative here",
    }
    for text, resolved in cases.items():
        assert resolve_relative(text, MONDAY) == resolved


def test_dates_in_questions_are_written_as_the_index_writes_them() -> None:
    for question in (
        "What did Maria do on 7 May 2023?",
        "what happened on May 7th, 2023",
        "and on 2023-05-07?",
        "the 7th of May 2023",
        "what did I do yesterday",
    ):
        assert query_dates(question, MONDAY) == ["7 May 2023"], question
    assert query_dates("may I ask something", MONDAY) == []
    assert query_dates("on 31 February 2023", MONDAY) == []


async def test_an_item_keeps_speaker_time_and_the_turn_it_answers(
    memory: MemoryService, store: Store
) -> None:
    item = await memory.save(
        "alice",
        "Amazing! We hiked to a waterfall yesterday.",
        kind="note",
        at=SAID,
        speaker="Maria",
        context="Jon: So how was the road trip?",
    )
    (row,) = await memory.repo.items("alice")
    assert row.id == item and row.created_at == SAID and row.updated_at == SAID
    assert row.text == "Maria: Amazing! We hiked to a waterfall yesterday (7 May 2023)."
    # the reply is found by the words of the question it answers ...
    hits = await memory.search("alice", "the road trip", mode="keyword")
    assert [h.item_id for h in hits] == [item]
    # ... and by the date it resolved to, in any common spelling
    for question in ("What did Maria do on May 7th, 2023?", "what happened 2023-05-07"):
        assert [h.item_id for h in await memory.search("alice", question, mode="keyword")] == [item]
    # what it depends on is searched, not shown
    assert "road trip" not in hits[0].text


async def test_context_counts_less_than_what_was_said(memory: MemoryService) -> None:
    reply = await memory.save("alice", "It was great", context="Jon: how was the kayak tour?")
    said = await memory.save("alice", "I booked a kayak tour for June")
    hits = await memory.search("alice", "kayak tour", mode="keyword")
    assert [h.item_id for h in hits] == [said, reply]


async def test_saying_the_same_again_is_as_recent_as_the_latest_time(
    memory: MemoryService,
) -> None:
    first = await memory.save("alice", "Good morning!", at=SAID)
    again = await memory.save("alice", "Good morning!", at=SAID + 86400)
    older = await memory.save("alice", "Good morning!", at=SAID - 86400)
    assert first == again == older
    (row,) = await memory.repo.items("alice")
    assert row.created_at == SAID and row.updated_at == SAID + 86400


def _rows(n: int) -> dict[int, ChunkRow]:
    return {i: ChunkRow(i, i, "alice", "note", f"text {i}", "", 0.0, 0.0) for i in range(n)}


def test_score_fusion_keeps_a_strong_keyword_hit_first() -> None:
    # chunk 1 matches the question's rare words; 2 and 3 are weak in both lists
    found = SearchRows(
        keyword=[1, 2, 3],
        vector=[2, 3, 1],
        rows=_rows(4),
        keyword_score={1: 9.0, 2: 1.0, 3: 0.9},
        vector_score={2: 0.41, 3: 0.40, 1: 0.39},
    )
    by_score = fuse(found, FusionWeights(method="score"), 10, now=0.0)
    assert [h.chunk_id for h in by_score] == [1, 2, 3]
    by_rank = fuse(found, FusionWeights(rrf_k=60), 10, now=0.0)
    assert by_rank[0].chunk_id == 2  # what rank fusion with k=60 did


def test_score_fusion_lets_meaning_win_when_words_do_not_match() -> None:
    found = SearchRows(
        keyword=[1, 2],
        vector=[3, 1],
        rows=_rows(4),
        keyword_score={1: 1.0, 2: 0.95},
        vector_score={3: 0.8, 1: 0.2},
    )
    hits = fuse(found, FusionWeights(method="score", vector=1.0), 10, now=0.0)
    assert [h.chunk_id for h in hits][:2] == [1, 3] and hits[2].chunk_id == 2
    keyword_only = fuse(found, FusionWeights(method="score", vector=0.0), 10, now=0.0)
    assert [h.chunk_id for h in keyword_only][:2] == [1, 2]


def test_merging_phrasings_rewards_agreement() -> None:
    def hit(cid: int, score: float) -> MemoryHit:
        return MemoryHit(cid, cid, "alice", "note", f"t{cid}", "", score, 0.0, 0.0)

    merged = merge_phrasings([[hit(1, 1.0), hit(2, 0.9)], [hit(2, 0.9), hit(3, 0.5)]], 10)
    assert [h.chunk_id for h in merged] == [2, 1, 3]
    assert len(merge_phrasings([[hit(1, 1.0), hit(2, 0.9)]], 1)) == 1


async def test_search_phrasings_finds_what_one_wording_misses(memory: MemoryService) -> None:
    item = await memory.save("alice", "I bought tickets to Toronto for the summer")
    assert await memory.search("alice", "trip to Canada", mode="keyword") == []
    hits = await memory.search_phrasings("alice", ["trip to Canada", "Toronto tickets"])
    assert hits[0].item_id == item


async def test_an_older_database_gets_the_context_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite.connect(path)
    newer = {n: f for n, f in migrations.MIGRATIONS.items() if n >= "m006_memory_context"}
    try:
        for name in newer:
            del migrations.MIGRATIONS[name]
        migration_runner.migrate(conn)
    finally:
        migrations.MIGRATIONS.update(newer)
    conn.execute(
        "INSERT INTO memory_items (owner, kind, text, text_hash, created_at, updated_at)"
        " VALUES ('alice', 'fact', 'alice plays the banjo', 'h', 0, 0)"
    )
    conn.execute(
        "INSERT INTO memory_chunks (item_id, owner, owner_tag, seq, text, text_hash)"
        " VALUES (1, 'alice', ?, 0, 'alice plays the banjo', 'h')",
        (owner_tag("alice"),),
    )
    conn.close()
    async with Store(path) as store:
        service = MemoryService(store, memory_config(None), tmp_path, redact=REDACT)
        await service.start(watch=False)
        await service.wait_ready()
        old = await service.search("alice", "banjo", mode="keyword")
        assert [h.text for h in old] == ["alice plays the banjo"]  # re-indexed
        item = await service.save("alice", "I play banjo", context="Jon: any instruments?")
        hits = await service.search("alice", "instruments", mode="keyword")
        assert [h.item_id for h in hits] == [item]
        await service.stop()


async def test_a_time_that_cannot_be_when_it_was_said_is_refused(memory: MemoryService) -> None:
    for at in (float("nan"), -1.0, 1e300, dt.datetime(2999, 1, 1).timestamp()):
        with pytest.raises(MemoryRequestError, match="between 1970 and tomorrow"):
            await memory.save("alice", "hello", at=at)
    assert await memory.count("alice") == 0
