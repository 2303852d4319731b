"""The second stage of a search: a question naming a speaker is searched again without the
name and that person's items rank higher; pseudo-relevance feedback carries the names in
the best hits ("Pepper") into a second round."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from bot.memory.feedback import (
    boost_speakers,
    feedback_query,
    merge_feedback,
    named_speakers,
    without_names,
)
from bot.memory.search import MemoryHit
from bot.memory.service import MemoryService
from bot.store import Store
from tests.deps import REDACT
from tests.memory.conftest import memory_config


def _hit(chunk_id: int, text: str, score: float) -> MemoryHit:
    return MemoryHit(chunk_id, chunk_id, "alice", "note", text, f"t{chunk_id}", score, 0.0, 0.0)


def test_a_named_speaker_is_matched_as_the_speaker_not_as_a_word() -> None:
    hits = [
        _hit(1, "Maria: Hi, how are you?", 3.0),
        _hit(2, "Jon: I adopted a beagle.", 2.0),
        _hit(3, "Maria: I adopted a greyhound.", 1.0),
        _hit(4, "a note without a speaker", 0.5),
    ]
    named = named_speakers(hits, ["maria", "adopt"])
    assert named == {"maria"}
    assert without_names("What did Maria's friends say to Maria?", named) == (
        "What did friends say to ?"
    )
    assert without_names("Is Marianne here?", named) == "Is Marianne here?"
    boosted = boost_speakers(hits, named, 2.0)
    assert [h.chunk_id for h in boosted] == [1, 3, 2, 4]
    assert boosted[1].score == 3.0
    # nobody named, or no boost: nothing changes
    assert named_speakers(hits, ["adopt"]) == set()
    assert boost_speakers(hits, set(), 2.0) == hits
    assert boost_speakers(hits, named, 0.0) == hits


def test_feedback_adds_the_names_of_the_best_hits() -> None:
    hits = [
        _hit(1, "Maria: Meet Pepper, my new greyhound. Best decision ever.", 2.0),
        _hit(2, "Maria: We booked flights to Lisbon with Pepper.", 1.0),
    ]
    expanded = feedback_query("What happened with the greyhound?", hits, 8)
    # the names, the most repeated first; not the speaker, a sentence's first word, or a
    # word the question has
    assert expanded == "What happened with the greyhound? pepper lisbon"
    assert feedback_query("pepper and lisbon", hits, 8) == "pepper and lisbon"
    assert feedback_query("q", hits, 1) == "q pepper"


def test_feedback_scores_add_a_share_of_the_second_round() -> None:
    first = [_hit(1, "a", 4.0), _hit(2, "b", 2.0)]
    second = [_hit(3, "c", 10.0), _hit(2, "b", 5.0)]
    merged = merge_feedback(first, second, 0.5)
    assert [(h.chunk_id, h.score) for h in merged] == [(1, 1.0), (2, 0.75), (3, 0.5)]


@pytest_asyncio.fixture
async def keyword_memory(store: Store, tmp_path: Path) -> AsyncIterator[Any]:
    async def make(**overrides: Any) -> MemoryService:
        config = memory_config(None, **overrides)
        service = MemoryService(store, config, tmp_path / "home", redact=REDACT)
        await service.start(watch=False)
        await service.wait_ready()
        started.append(service)
        return service

    started: list[MemoryService] = []
    yield make
    for service in started:
        await service.stop()


async def _save_conversation(memory: MemoryService) -> None:
    turns = [
        ("Maria", "Hi, how are you?"),
        ("Maria", "Good morning!"),
        ("Jon", "We adopted a beagle, what a sweetheart."),
        ("Maria", "Meet Pepper, my new greyhound. Best decision ever."),
        ("Maria", "Work has been crazy lately."),
        ("Maria", "Pepper won a ribbon at the local show!"),
        ("Jon", "The greyhound races were on television."),
    ]
    for speaker, text in turns:
        await memory.save("alice", text, kind="note", speaker=speaker)


async def test_a_question_naming_a_person_finds_what_that_person_said(keyword_memory: Any) -> None:
    plain = await keyword_memory(speaker_boost=0.0)
    await _save_conversation(plain)
    question = "Which greyhound did Maria adopt?"
    # on its own the name matches Maria's shortest remarks best
    first = await plain.search("alice", question, limit=1, mode="keyword")
    assert first[0].text != "Maria: Meet Pepper, my new greyhound. Best decision ever."
    memory = await keyword_memory(speaker_boost=2.0)
    hits = await memory.search("alice", question, limit=2, mode="keyword")
    assert hits[0].text == "Maria: Meet Pepper, my new greyhound. Best decision ever."


async def test_feedback_finds_a_later_remark_through_a_name(keyword_memory: Any) -> None:
    plain = await keyword_memory(feedback_hits=0)
    await _save_conversation(plain)
    question = "What happened with Maria's greyhound?"
    texts = [h.text for h in await plain.search("alice", question, limit=5, mode="keyword")]
    assert "Maria: Pepper won a ribbon at the local show!" not in texts
    memory = await keyword_memory(feedback_hits=1, feedback_weight=0.5)
    texts = [h.text for h in await memory.search("alice", question, limit=5, mode="keyword")]
    assert texts[0] == "Maria: Meet Pepper, my new greyhound. Best decision ever."
    assert "Maria: Pepper won a ribbon at the local show!" in texts


async def test_a_question_that_is_only_a_name_finds_that_person(keyword_memory: Any) -> None:
    memory = await keyword_memory()
    await _save_conversation(memory)
    hits = await memory.search("alice", "Maria?", limit=10, mode="keyword")
    assert len(hits) == 5 and all(h.text.startswith("Maria: ") for h in hits)
