"""The last stage of a search: days the question names (also given from another day), the
turn that answers a question hit, coverage of the question's words (and words near them in
the embedder's space), the session of the best hits and the answers to a question asked
right after one."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from bot.memory import rerank as rerank_module
from bot.memory.dates import query_dates
from bot.memory.rerank import (
    WordVectors,
    asks_follow_up,
    boost_dated,
    boost_follow_ups,
    boost_session,
    coverage,
    demote_questions,
    rerank,
    with_replies,
)
from bot.memory.search import MemoryHit
from bot.memory.service import MemoryService
from bot.store import Store
from bot.store.config import StoreConfig, open_store
from bot.store.memory import ChunkRow
from tests.deps import REDACT
from tests.memory.conftest import memory_config

DAY = 86400.0


def _hit(cid: int, text: str, score: float, context: str = "") -> MemoryHit:
    return MemoryHit(cid, cid, "alice", "note", text, f"t{cid}", score, 0.0, 0.0, context=context)


def test_a_day_given_from_another_day_is_the_day_it_means() -> None:
    today = dt.date(2024, 1, 1)
    cases = {
        "What happened to Maria two days before 9 May 2023?": ["7 May 2023"],
        "What news did someone share a week after 2 March 2023?": ["9 March 2023"],
        "the day before 1 March 2024": ["29 February 2024"],
        "the Friday before 15 July 2023": ["14 July 2023"],  # a Saturday
        "the weekend before 17 July 2023": ["the weekend of 15 July 2023"],
        "the week before 9 June 2023": ["the week of 29 May 2023"],
        "three days after May 30, 2023": ["2 June 2023"],
        "What did Maria do on 7 May 2023?": ["7 May 2023"],
        # no year: days still count, weekdays are unknown
        "the day after May 3": ["4 May"],
        "two days before 8 May": ["6 May"],
        "the Friday before 15 July": ["15 July"],
    }
    for question, days in cases.items():
        assert query_dates(question, today) == days, question


def test_items_holding_the_day_rank_first_and_enter_when_missing() -> None:
    hits = [_hit(1, "a", 4.0), _hit(2, "b", 2.0), _hit(3, "c", 1.0)]
    dated = [_hit(3, "c", 9.0), _hit(7, "g", 9.0)]
    out = boost_dated(hits, dated, 1.0)
    assert [(h.chunk_id, h.score) for h in out] == [(3, 5.0), (1, 4.0), (7, 4.0), (2, 2.0)]
    assert boost_dated(hits, dated, 0.0) == hits
    assert boost_dated(hits, [], 1.0) == hits


def test_coverage_counts_words_near_ones_and_the_turn_before_at_half() -> None:
    terms = ["dog", "adopt"]
    hits = [
        _hit(1, "Maria: We adopted a greyhound!", 1.0),
        _hit(2, "Maria: The dog barked all night", 1.0),
        _hit(3, "Maria: Amazing, all went well", 1.0, context="after: Jon: Did you adopt?"),
        _hit(4, "Jon: Coffee again", 1.0),
    ]
    plain = coverage(terms, hits, None)
    assert plain == [0.5, 0.5, 0.25, 0.0]  # "adopted" is "adopt"; context counts half
    rng = np.random.default_rng(1)
    words = ["dog", "adopt", "adopted", "greyhound", "barked", "night", "amazing", "went",
             "well", "jon", "coffee", "maria"]  # fmt: skip
    vectors = {w: v / np.linalg.norm(v) for w in words if (v := rng.normal(size=32)) is not None}
    vectors["greyhound"] = vectors["dog"]  # the same thing in the embedder's space
    soft = coverage(terms, hits, vectors)
    assert soft[0] == 1.0 and soft[0] > plain[0]
    assert soft[3] < 0.5


def test_rerank_puts_what_covers_the_question_first_and_keeps_the_rest_after() -> None:
    hits = [_hit(1, "a", 3.0), _hit(2, "b", 2.5), _hit(3, "c", 2.0), _hit(4, "d", 1.0)]
    out = rerank(hits, [0.0, 1.0, 0.0], 0.5)
    assert [h.chunk_id for h in out] == [2, 1, 3, 4]
    assert out[-1].score < out[-2].score
    assert rerank(hits, [0.0, 1.0, 0.0], 0.0) == hits


def test_a_question_hit_pulls_in_the_turn_that_answers_it() -> None:
    question = _hit(1, "Jon: So how was the road trip?", 2.0)
    remark = _hit(5, "Jon: The road was closed", 1.5)
    row = ChunkRow(2, 2, "alice", "note", "Maria: Amazing, a waterfall!", "t2", 0.0, 0.0)
    other = ChunkRow(6, 6, "alice", "note", "Maria: Yes", "t6", 0.0, 0.0)
    out = with_replies([question, remark], {1: row, 5: other}, 0.5)
    assert [(h.chunk_id, h.score) for h in out] == [(1, 2.0), (5, 1.5), (2, 1.0)]
    assert with_replies([question, remark], {1: row}, 0.0) == [question, remark]


async def test_word_vectors_are_kept_and_none_without_an_embedder() -> None:
    calls: list[list[str]] = []

    async def embed(words: list[str]) -> list[list[float]] | None:
        calls.append(words)
        return [[1.0, float(len(w))] for w in words]

    words = WordVectors(embed)
    first = await words.get(["dog", "cat"])
    assert first is not None and abs(float(np.linalg.norm(first["dog"])) - 1.0) < 1e-6
    await words.get(["dog", "bird"])
    assert calls == [["dog", "cat"], ["bird"]]

    async def none(words: list[str]) -> list[list[float]] | None:
        return None

    assert await WordVectors(none).get(["dog"]) is None


async def test_a_full_word_cache_keeps_the_words_of_the_search_asking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rerank_module, "_WORD_CACHE", 4)

    async def embed(words: list[str]) -> list[list[float]] | None:
        return [[1.0, float(len(w))] for w in words]

    words = WordVectors(embed)
    await words.get(["ant", "bee", "cat", "dog"])
    # "ant" is the oldest entry of a full cache, and asked for again with a new word
    got = await words.get(["ant", "eel"])
    assert got is not None and set(got) == {"ant", "eel"}
    # more words than the cache holds: all answered, the cache stays at its size
    many = [f"w{i}" for i in range(9)]
    got = await words.get(many)
    assert got is not None and set(got) == set(many)
    assert len(words._cache) == 4


async def test_a_word_dropped_by_another_search_while_embedding_is_still_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rerank_module, "_WORD_CACHE", 3)
    release = asyncio.Event()

    async def embed(words: list[str]) -> list[list[float]] | None:
        if "slow" in words:
            await release.wait()
        return [[1.0, float(len(w))] for w in words]

    words = WordVectors(embed)
    await words.get(["ant"])
    first = asyncio.create_task(words.get(["ant", "slow"]))
    await asyncio.sleep(0)
    # meanwhile another search fills the cache and pushes "ant" out
    await words.get(["bee", "cat", "dog"])
    release.set()
    got = await first
    assert got is not None and set(got) == {"ant", "slow"}


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    async with open_store(StoreConfig(url=url) if url else StoreConfig(), tmp_path) as store:
        yield store


@pytest_asyncio.fixture
async def memory(any_store: Store, tmp_path: Path) -> AsyncIterator[Any]:
    """Services on one store of either backend: the last stage's SQL is plain SQL."""
    store = any_store
    started: list[MemoryService] = []

    async def make(**overrides: Any) -> MemoryService:
        service = MemoryService(
            store, memory_config(None, **overrides), tmp_path / "home", redact=REDACT
        )
        await service.start(watch=False)
        await service.wait_ready()
        started.append(service)
        return service

    yield make
    for service in started:
        await service.stop()


async def test_a_question_naming_a_day_finds_what_happened_that_day(memory: Any) -> None:
    start = dt.datetime(2023, 5, 1, 12, tzinfo=dt.UTC).timestamp()
    plain = await memory(date_boost=0.0)
    said = [
        (0, "Maria", "Work has been crazy, I need a holiday in May"),
        (6, "Maria", "I sprained my ankle yesterday"),  # resolved to 6 May 2023
        # said on 8 May: more of the question's words, none of the day it means
        (7, "Jon", "It happened again: two days of rain, two whole days!"),
    ]
    for days, speaker, text in said:
        await plain.save("alice", text, kind="note", speaker=speaker, at=start + days * DAY)
    question = "What happened two days before 8 May 2023?"
    first = await plain.search("alice", question, limit=1)
    assert "ankle" not in first[0].text
    boosted = await memory(date_boost=1.0)
    hits = await boosted.search("alice", question, limit=3)
    assert hits[0].text == "Maria: I sprained my ankle yesterday (6 May 2023)"
    hits = await boosted.search("alice", "What happened two days before 8 May?", limit=3)
    assert hits[0].text == "Maria: I sprained my ankle yesterday (6 May 2023)"
    # a month holds too many items to rank by: no boost
    month = "What happened in May 2023?"
    assert await boosted.search("alice", month) == await plain.search("alice", month)


async def test_the_answer_to_a_question_hit_is_pulled_in_within_the_owner(memory: Any) -> None:
    start = dt.datetime(2023, 5, 1, 12, tzinfo=dt.UTC).timestamp()
    plain = await memory(neighbour_hits=0)
    await plain.save("alice", "So how was the road trip?", speaker="Jon", at=start)
    await plain.save("bob", "Bob's own secret remark", speaker="Bob", at=start + 1)
    # a context of its own: without one it would keep the turn before, and be found by it
    await plain.save(
        "alice", "Amazing, we hiked to a waterfall", speaker="Maria", at=start + 2,
        context="Maria: one second, finding the photos",
    )  # fmt: skip
    await plain.save("alice", "Unrelated, much later", speaker="Maria", at=start + DAY)
    await plain.save("alice", "Any road trip tips?", speaker="Jon", at=start + 2 * DAY)
    await plain.save("alice", "Pack snacks", speaker="Maria", at=start + 3 * DAY)  # a day on
    question = "road trip"
    texts = [h.text for h in await plain.search("alice", question, limit=10, mode="keyword")]
    assert not any("waterfall" in t for t in texts)
    pulled = await memory(neighbour_hits=3, neighbour_weight=0.5)
    texts = [h.text for h in await pulled.search("alice", question, limit=10, mode="keyword")]
    assert "Maria: Amazing, we hiked to a waterfall" in texts
    # another person's item between the two is never pulled in; nor a turn a day later
    assert not any("Bob" in t or "snacks" in t for t in texts)


def test_a_hit_that_asks_scores_less_than_what_was_said() -> None:
    hits = [_hit(1, "How long have you been married?", 1.0), _hit(2, "Six years now!", 0.8)]
    out = demote_questions(hits, 0.7)
    assert [(h.chunk_id, round(h.score, 3)) for h in out] == [(2, 0.8), (1, 0.7)]
    assert demote_questions(hits, 1.0) == hits


async def test_the_reply_ranks_above_the_question_it_answers(memory: Any) -> None:
    start = dt.datetime(2023, 5, 1, 12, tzinfo=dt.UTC).timestamp()
    said = [
        ("Jon", "How long have you two been married?"),
        ("Maria", "Six years married in June"),
        ("Jon", "Ha, we married young too"),
    ]
    question = "How long has someone been married?"
    asked_first = await memory(question_weight=1.0)
    for i, (speaker, text) in enumerate(said):
        await asked_first.save("alice", text, kind="note", speaker=speaker, at=start + i)
    # both hold the question's words; the question turn, shorter, has the better BM25
    first = await asked_first.search("alice", question, limit=3, mode="keyword")
    assert first[0].text == "Jon: How long have you two been married?"
    shipped = await memory()
    hits = await shipped.search("alice", question, limit=3, mode="keyword")
    assert hits[0].text == "Maria: Six years married in June"


def test_the_session_of_the_two_best_hits_ranks_higher() -> None:
    def said(cid: int, score: float, days: float) -> MemoryHit:
        return dataclasses.replace(_hit(cid, f"turn {cid}", score), created_at=days * DAY)

    # 1, 2 and 4 were said in one session (a minute apart each); 3 two days later
    hits = [said(1, 1.0, 0), said(2, 0.9, 60 / DAY), said(3, 0.85, 2), said(4, 0.8, 120 / DAY)]
    tail = said(5, 0.1, 0)
    assert [h.chunk_id for h in boost_session([*hits, tail], 4, 0.0, 600)] == [1, 2, 3, 4, 5]
    out = boost_session([*hits, tail], 4, 0.5, 600)
    assert [(h.chunk_id, round(h.score, 3)) for h in out[:4]] == [
        (1, 1.5), (2, 1.35), (4, 1.2), (3, 0.85)
    ]  # fmt: skip
    # what lies below the depth stays after, even when it belongs to that session
    assert out[4].chunk_id == 5 and out[4].score < out[3].score
    # the two best said on different days: no session stands out
    apart = [said(1, 1.0, 0), said(3, 0.9, 2), said(4, 0.8, 60 / DAY)]
    assert boost_session(apart, 3, 0.5, 600) == apart


async def test_the_other_turns_of_the_best_hits_session_climb(memory: Any) -> None:
    start = dt.datetime(2023, 5, 1, 12, tzinfo=dt.UTC).timestamp()
    said = [
        (0, "canyon trail at sunrise"),
        (60, "sunrise at the canyon rim"),
        (120, "we took the long and winding trail back down to the car"),
        (10 * DAY, "a canyon postcard of the canyon"),
        (20 * DAY, "trail running shoes for the trail"),
        # other days, so that BM25 has words to tell rare from common by
        *((d * DAY, t) for d, t in enumerate(("pasta dinner", "rainy day", "fixed the bike"), 30)),
    ]
    question = "canyon trail sunrise"
    plain, boosted = await memory(session_boost=0.0), await memory(session_boost=2.0)
    for offset, text in said:
        # a context of its own: the turn before would hold the question's words
        await plain.save(
            "alice", text, kind="note", speaker="Maria", at=start + offset, context="hello"
        )
    before = [h.text for h in await plain.search("alice", question, limit=5, mode="keyword")]
    after = [h.text for h in await boosted.search("alice", question, limit=5, mode="keyword")]
    best = ["Maria: canyon trail at sunrise", "Maria: sunrise at the canyon rim"]
    assert before[:2] == after[:2] == best
    # the third turn of that session matches one word, as two turns of other days do (twice
    # each): it was below both, and is above them
    weaker, others = (
        "Maria: we took the long and winding trail back down to the car",
        ["Maria: a canyon postcard of the canyon", "Maria: trail running shoes for the trail"],
    )
    assert before.index(weaker) > max(before.index(o) for o in others)
    assert after.index(weaker) < min(after.index(o) for o in others)


def test_a_follow_up_is_a_question_about_something_not_a_reaction() -> None:
    assert asks_follow_up("Jon: Which dish did you like best on that menu?")
    assert not asks_follow_up("Jon: Wow, really?")  # a reaction holds nothing to answer
    assert not asks_follow_up("Jon: You liked every dish on that menu.")


def test_the_answer_to_a_follow_up_adds_a_share_of_the_hits_score() -> None:
    def row(cid: int, text: str) -> ChunkRow:
        return ChunkRow(cid, cid, "alice", "note", text, f"t{cid}", 0.0, 0.0)

    hits = [_hit(1, "loved that book", 1.0), _hit(2, "other", 0.8), _hit(3, "answer", 0.5)]
    assert boost_follow_ups(hits, {1: row(3, "answer")}, 0.0) == hits
    out = boost_follow_ups(hits, {1: row(3, "answer")}, 0.5)
    assert [(h.chunk_id, h.score) for h in out] == [(1, 1.0), (3, 1.0), (2, 0.8)]
    # an answer that was not a candidate enters with the share alone; the best hit counts
    out = boost_follow_ups(hits, {1: row(9, "new"), 2: row(9, "new")}, 0.5)
    assert [(h.chunk_id, h.score) for h in out] == [(1, 1.0), (2, 0.8), (3, 0.5), (9, 0.5)]
    assert out[3].text == "new"
    # a hit that is not a candidate lends nothing
    assert boost_follow_ups(hits, {7: row(3, "answer")}, 0.5) == hits


async def test_the_answer_to_a_follow_up_on_a_best_hit_is_found(memory: Any) -> None:
    start = dt.datetime(2023, 5, 1, 12, tzinfo=dt.UTC).timestamp()
    plain, shipped = await memory(follow_up_share=0.0), await memory()
    said = [
        ("alice", "Maria", "We finally tried the Ethiopian restaurant downtown"),
        ("bob", "Bob", "Bob's own remark on the Ethiopian restaurant"),  # another's memory
        ("alice", "Jon", "Which dish did you like best on their menu?"),
        ("alice", "Maria", "The lentil stew, by far"),
        # a reaction is no follow-up: what comes after it is not an answer
        ("alice", "Maria", "Another restaurant opened next to the downtown one"),
        ("alice", "Jon", "Wow, really?"),
        ("alice", "Maria", "Yes, it took them all winter"),
        ("alice", "Maria", "The Ethiopian restaurant had live music too"),
        ("alice", "Jon", "What kind of music did the band play there?"),
    ]
    for i, (person, speaker, text) in enumerate(said):
        # a context of its own: the turn before would hold the question's words
        await plain.save(
            person, text, kind="note", speaker=speaker, at=start + i, context="hello"
        )  # fmt: skip
    # an answer a day later belongs to another conversation
    await plain.save("alice", "Sorry, busy week!", speaker="Maria", at=start + DAY, context="hi")
    question = "the Ethiopian restaurant downtown"
    before = [h.text for h in await plain.search("alice", question, limit=10, mode="keyword")]
    after = [h.text for h in await shipped.search("alice", question, limit=10, mode="keyword")]
    answer = "Maria: The lentil stew, by far"
    assert answer not in before
    assert answer in after
    assert not any("winter" in t or "Bob" in t or "busy" in t for t in after)
