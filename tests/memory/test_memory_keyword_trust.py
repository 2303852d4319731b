"""Score fusion that trusts keyword search where the question uses an answer's own words,
and the vectors where it says things in other words."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from bot.memory.config import MemoryConfig
from bot.memory.search import FusionWeights, fuse, keyword_shares
from bot.memory.service import MemoryService
from bot.store import Store
from bot.store.memory import ChunkRow, SearchRows
from tests.deps import REDACT
from tests.memory.conftest import memory_config

TEXTS = {
    1: "Nora: We finally booked the ferry to Skye for the autumn holidays",
    2: "Nora: Long weekend coming, so excited to get away for a bit",
    3: "Nora: The kids loved the boat ride across the lake",
}


def _found(
    keyword: list[int], vector: list[int], cosines: dict[int, float] | None = None
) -> SearchRows:
    rows = {i: ChunkRow(i, i, "alice", "note", t, "", 0.0, 0.0) for i, t in TEXTS.items()}
    return SearchRows(
        keyword=keyword,
        vector=vector,
        rows=rows,
        keyword_score={c: 10.0 - i for i, c in enumerate(keyword)},
        vector_score=cosines or {c: 0.7 - 0.2 * i for i, c in enumerate(vector)},
    )


LIFTING = FusionWeights(method="score", vector=4.0, keyword_sure=0.5, keyword_sure_lift=1.0)
#: the same hits are sure, and not lifted
UNLIFTED = dataclasses.replace(LIFTING, keyword_sure_lift=0.0)
#: the keyword trust shipped before the lift (no "sure"): the vector weight falls by 0.9 x share
TRUSTING = FusionWeights(method="score", vector=2.0, keyword_trust=0.9, keyword_share_trust=0.9)


def _largest_share(found: SearchRows, terms: list[str]) -> float:
    return max(keyword_shares(found, terms).values(), default=0.0)


def test_confidence_is_the_share_of_the_question_the_best_keyword_hits_hold() -> None:
    found = _found([1, 3], [2, 3, 1])
    assert _largest_share(found, ["booked", "ferry", "skye"]) == 1.0
    # a word of five letters or more counts when its first five match ("holiday(s)")
    assert _largest_share(found, ["ferry", "holiday"]) == 1.0
    assert _largest_share(found, ["ferry", "getaway", "island", "trip"]) == 0.25
    # the speaker's name in front is who said it, not what was said
    assert _largest_share(found, ["nora"]) == 0.0
    assert _largest_share(found, []) == 0.0
    assert _largest_share(_found([], [2]), ["ferry"]) == 0.0


def test_a_question_in_the_answers_words_is_ranked_by_keyword() -> None:
    # chunk 1 holds every word of the question; the vectors prefer chunk 2
    found = _found([1, 3], [2, 3, 1])
    shares = keyword_shares(found, ["booked", "ferry", "skye"])
    assert fuse(found, TRUSTING, 10, 0.0, shares)[0].chunk_id == 1
    fixed = FusionWeights(method="score", vector=2.0, keyword_share_trust=0.0)
    assert fuse(found, fixed, 10, 0.0, shares)[0].chunk_id == 2


def test_a_question_in_other_words_keeps_the_vectors_weight() -> None:
    found = _found([1, 3], [2, 3, 1])
    shares = keyword_shares(found, ["getaway", "break"])
    assert max(shares.values()) == 0.0
    assert fuse(found, TRUSTING, 10, 0.0, shares)[0].chunk_id == 2


def test_the_shipped_fusion_lifts_what_keyword_search_is_sure_of() -> None:
    found = _found([1, 3], [2, 1, 3])
    shares = keyword_shares(found, ["booked", "ferry", "getaway"])  # chunk 1: two of three
    shipped = FusionWeights.from_config(MemoryConfig())
    sure = [cid for cid, share in shares.items() if share > shipped.keyword_sure]
    assert sure == [1]
    hits = fuse(found, shipped, 10, 0.0, shares)
    assert [h.chunk_id for h in hits] == [1, 2, 3]
    unlifted = dataclasses.replace(shipped, keyword_sure_lift=0.0)
    assert fuse(found, unlifted, 10, 0.0, shares)[0].chunk_id == 2


def test_shares_are_of_the_best_keyword_hits() -> None:
    found = _found([1, 3, 2], [2, 3, 1])
    assert keyword_shares(found, ["booked", "ferry", "getaway"]) == {1: 2 / 3, 3: 0.0, 2: 0.0}
    assert keyword_shares(_found([3, 2, 1], []), ["ferry"]) == {3: 0.0, 2: 0.0, 1: 1.0}
    assert keyword_shares(found, []) == {}


def test_a_sure_keyword_hit_comes_first_and_the_vectors_order_the_rest() -> None:
    found = _found([1, 3], [2, 1, 3])
    shares = keyword_shares(found, ["booked", "ferry", "getaway"])  # 1: two of three
    hits = fuse(found, LIFTING, 10, 0.0, shares)
    assert [h.chunk_id for h in hits] == [1, 2, 3]
    # not lifted, the vectors' pick comes first
    assert fuse(found, UNLIFTED, 10, 0.0, shares)[0].chunk_id == 2
    # the vector weight falling for every hit (the fusion before) puts keyword's order on
    # the rest as well (scores 1.1, 0.9, 0.2: no tie)
    falling = FusionWeights(method="score", vector=2.0, keyword_trust=0.9, keyword_sure=0.5)
    assert [h.chunk_id for h in fuse(found, falling, 10, 0.0, shares)] == [1, 3, 2]
    # rank fusion has no nearness to lift
    by_rank = dataclasses.replace(LIFTING, method="rrf")
    assert fuse(found, by_rank, 10, 0.0, shares) == fuse(
        found, dataclasses.replace(UNLIFTED, method="rrf"), 10, 0.0, shares
    )


def test_a_sure_keyword_hit_the_vectors_missed_is_lifted() -> None:
    found = _found([1, 3], [2, 3])
    hits = fuse(found, LIFTING, 10, 0.0, {1: 1.0})
    assert [h.chunk_id for h in hits] == [1, 2, 3]
    assert hits[0].vector_rank is None
    assert fuse(found, UNLIFTED, 10, 0.0, {1: 1.0})[0].chunk_id == 2


def test_a_sure_hit_is_lifted_level_with_the_nearest_candidate_not_above() -> None:
    # cosines closer than the spread's floor: the nearest candidate scales to 0.5
    close = _found([1, 3], [2, 1, 3], {2: 0.70, 1: 0.66, 3: 0.65})
    vector_only = dataclasses.replace(LIFTING, keyword=0.0)
    scores = {h.chunk_id: h.score for h in fuse(close, vector_only, 10, 0.0, {1: 1.0})}
    assert scores[1] == scores[2] > scores[3]
    # one vector candidate scales to 0: there is nothing to be level with
    single = _found([1, 3], [2])
    lifted = fuse(single, LIFTING, 10, 0.0, {1: 1.0})
    assert lifted == fuse(single, UNLIFTED, 10, 0.0, {1: 1.0})
    assert [h.chunk_id for h in lifted] == [1, 3, 2]


def test_keyword_search_alone_keeps_its_order_whatever_is_sure() -> None:
    found = _found([3, 1], [])
    assert [h.chunk_id for h in fuse(found, LIFTING, 10, 0.0, {1: 1.0})] == [3, 1]


def test_share_trust_lowers_the_vector_weight_at_or_below_sure() -> None:
    # chunk 1 holds half of the question: the vectors' pick 2 wins at full weight, and
    # loses once the weight falls by the share
    found = _found([1, 3], [2, 1])
    half = keyword_shares(found, ["ferry", "getaway"])
    assert max(half.values()) == 0.5
    full = FusionWeights(method="score", vector=1.2, keyword_sure=0.5, keyword_share_trust=0.0)
    assert fuse(found, full, 10, 0.0, half)[0].chunk_id == 2
    by_share = dataclasses.replace(full, keyword_share_trust=0.5)
    assert fuse(found, by_share, 10, 0.0, half)[0].chunk_id == 1


@pytest_asyncio.fixture
async def hybrid_memory(store: Store, tiny_model: Path, tmp_path: Path) -> AsyncIterator[Any]:
    services: list[MemoryService] = []

    async def make(**overrides: Any) -> MemoryService:
        config = memory_config(tiny_model, **overrides)
        service = MemoryService(store, config, tmp_path / "home", redact=REDACT)
        await service.start(watch=False)
        await service.wait_ready()
        services.append(service)
        return service

    yield make
    for service in services:
        await service.stop()


async def test_a_best_keyword_hit_holding_most_of_the_question_outranks_the_vectors_pick(
    hybrid_memory: Any,
) -> None:
    memory = await hybrid_memory()
    # the answer holds two of the question's three words among unrelated ones; the
    # chatter holds one, and words near all three (the tiny model's synonyms), so the
    # vectors put it first
    answer = await memory.save("alice", "zulu hamburg alpha bravo charlie delta echo foxtrot")
    chatter = await memory.save("alice", "matcha chai oolong berlin munich")
    await memory.save("alice", "monday tuesday friday sunday")
    await memory.save("alice", "red green blue yellow purple")
    await memory.backfill()
    question = "matcha hamburg zulu"

    hits = await memory.search("alice", question, limit=5)
    assert [h.item_id for h in hits[:2]] == [answer, chatter]

    # not lifted, the vectors' pick wins
    unlifted = await hybrid_memory(keyword_sure_lift=0.0)
    hits = await unlifted.search("alice", question, limit=5)
    assert hits[0].item_id == chatter


async def test_a_switched_config_changes_the_search_and_its_fusion_together(
    hybrid_memory: Any,
) -> None:
    """`use` switches the settings on the index as it is: the fusion weights made of the
    config change with it (the lift is a weight, read nowhere else)."""
    memory = await hybrid_memory()
    answer = await memory.save("alice", "zulu hamburg alpha bravo charlie delta echo foxtrot")
    chatter = await memory.save("alice", "matcha chai oolong berlin munich")
    await memory.save("alice", "monday tuesday friday sunday")
    await memory.backfill()
    question = "matcha hamburg zulu"
    shipped = memory.config

    memory.use(shipped.model_copy(update={"keyword_sure_lift": 0.0}))
    assert (await memory.search("alice", question, limit=5))[0].item_id == chatter
    memory.use(shipped)
    assert (await memory.search("alice", question, limit=5))[0].item_id == answer


def test_confidence_above_sure_counts_as_the_whole_question() -> None:
    found = _found([1, 3], [2, 3, 1])
    sure = dataclasses.replace(TRUSTING, keyword_sure=0.5)
    by_share = TRUSTING
    # chunk 1 holds two of the three words: by the share alone, the vectors outweigh it
    shares = keyword_shares(found, ["booked", "ferry", "getaway"])
    assert fuse(found, by_share, 10, 0.0, shares)[0].chunk_id != 1
    assert fuse(found, sure, 10, 0.0, shares)[0].chunk_id == 1
    # at or below half, the share decides as before
    half = keyword_shares(found, ["ferry", "getaway"])
    assert max(half.values()) == 0.5
    assert (
        fuse(found, sure, 10, 0.0, half)[0].chunk_id
        == fuse(found, by_share, 10, 0.0, half)[0].chunk_id
    )
