"""Score fusion that trusts keyword search where the question uses an answer's own words,
and the vectors where it says things in other words."""

from __future__ import annotations

from bot.memory.config import MemoryConfig
from bot.memory.search import FusionWeights, fuse, keyword_confidence
from bot.store.memory import ChunkRow, SearchRows

TEXTS = {
    1: "Nora: We finally booked the ferry to Skye for the autumn holidays",
    2: "Nora: Long weekend coming, so excited to get away for a bit",
    3: "Nora: The kids loved the boat ride across the lake",
}


def _found(keyword: list[int], vector: list[int]) -> SearchRows:
    rows = {i: ChunkRow(i, i, "alice", "note", t, "", 0.0, 0.0) for i, t in TEXTS.items()}
    return SearchRows(
        keyword=keyword,
        vector=vector,
        rows=rows,
        keyword_score={c: 10.0 - i for i, c in enumerate(keyword)},
        vector_score={c: 0.7 - 0.2 * i for i, c in enumerate(vector)},
    )


def test_confidence_is_the_share_of_the_question_the_best_keyword_hits_hold() -> None:
    found = _found([1, 3], [2, 3, 1])
    assert keyword_confidence(found, ["booked", "ferry", "skye"]) == 1.0
    # a word of five letters or more counts when its first five match ("holiday(s)")
    assert keyword_confidence(found, ["ferry", "holiday"]) == 1.0
    assert keyword_confidence(found, ["ferry", "getaway", "island", "trip"]) == 0.25
    # the speaker's name in front is who said it, not what was said
    assert keyword_confidence(found, ["nora"]) == 0.0
    assert keyword_confidence(found, []) == 0.0
    assert keyword_confidence(_found([], [2]), ["ferry"]) == 0.0


def test_a_question_in_the_answers_words_is_ranked_by_keyword() -> None:
    # chunk 1 holds every word of the question; the vectors prefer chunk 2
    found = _found([1, 3], [2, 3, 1])
    trusting = FusionWeights(method="score", vector=2.0, keyword_trust=0.9)
    confidence = keyword_confidence(found, ["booked", "ferry", "skye"])
    assert fuse(found, trusting, 10, 0.0, confidence)[0].chunk_id == 1
    fixed = FusionWeights(method="score", vector=2.0)
    assert fuse(found, fixed, 10, 0.0, confidence)[0].chunk_id == 2


def test_a_question_in_other_words_keeps_the_vectors_weight() -> None:
    found = _found([1, 3], [2, 3, 1])
    trusting = FusionWeights(method="score", vector=2.0, keyword_trust=0.9)
    confidence = keyword_confidence(found, ["getaway", "break"])
    assert confidence == 0.0
    assert fuse(found, trusting, 10, 0.0, confidence)[0].chunk_id == 2


def test_the_shipped_fusion_trusts_keywords() -> None:
    assert MemoryConfig().keyword_trust == 0.9
