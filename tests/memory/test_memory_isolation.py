"""No query for one person ever returns another person's items: keyword, vector, hybrid,
recall and tools, across random items and queries."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.memory.service import MemoryService
from bot.memory.text import STOPWORDS, chunk_text, text_hash
from bot.memory.tools import memory_forget, memory_save, memory_search
from bot.messages import Conversation, ConversationKind, Identity
from bot.store import Store
from bot.store.memory import SHARED, NewChunk
from bot.tools import ToolContext
from tests.deps import REDACT, make_deps
from tests.memory.conftest import VOCAB, memory_config

PEOPLE = ("alice", "bob", "carol")
MODES = ("keyword", "vector", "hybrid")
texts = st.lists(st.sampled_from(VOCAB), min_size=1, max_size=8).map(" ".join)
queries = st.one_of(texts, st.text(max_size=30))


async def _add_knowledge(service: MemoryService, path: str, text: str) -> None:
    chunks = [NewChunk(c.seq, c.text, text_hash(c.text)) for c in chunk_text(text, 400, 50)]
    await service.repo.replace_knowledge(path, text_hash(text), text, chunks, None)
    await service.backfill()


def test_no_query_crosses_people(tmp_path_factory, tiny_model: Path) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.new_event_loop()
    store = Store(tmp_path_factory.mktemp("iso") / "db.sqlite")
    service = MemoryService(store, memory_config(tiny_model), Path("/nonexistent"), redact=REDACT)

    async def setup() -> None:
        await store.start()
        await service.start(watch=False)
        await service.wait_ready()

    loop.run_until_complete(setup())
    example = itertools.count()

    async def scenario(
        items: list[tuple[int, str]], asked: list[str], knowledge: list[str]
    ) -> None:
        n = next(example)
        people = [f"{p}-{n}" for p in PEOPLE]  # fresh people for every example
        saved: dict[str, set[str]] = {p: set() for p in people}
        for who, text in items:
            await service.save(people[who], text)
            saved[people[who]].add(text)
        for i, text in enumerate(knowledge):
            await _add_knowledge(service, f"k{n}-{i}.md", text)
        assert service.status().mode == "hybrid"
        for person, query, mode, shared in itertools.product(people, asked, MODES, (True, False)):
            hits = await service.search(person, query, mode=mode, include_shared=shared)
            allowed = {person, SHARED} if shared else {person}
            assert {h.owner for h in hits} <= allowed, (person, query, mode)
            assert all(h.text in saved[person] for h in hits if h.owner == person)
            words = set(query.lower().split()) - STOPWORDS
            own_words = {w for t in saved[person] for w in t.split()}
            if mode == "keyword" and words & own_words and query.strip() == query:
                assert any(h.owner == person for h in hits), (person, query)
        for person in people:
            recalled = await service.recall(person, " ".join(asked), budget_tokens=2000)
            assert {h.owner for h in recalled} <= {person, SHARED}
        for i in range(len(knowledge)):  # examples stay independent: knowledge is shared
            await service.repo.remove_knowledge(f"k{n}-{i}.md")

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        items=st.lists(st.tuples(st.integers(0, 2), texts), min_size=1, max_size=12),
        asked=st.lists(queries, min_size=1, max_size=3),
        knowledge=st.lists(texts, max_size=2),
    )
    def check(items: list[tuple[int, str]], asked: list[str], knowledge: list[str]) -> None:
        loop.run_until_complete(scenario(items, asked, knowledge))

    try:
        check()
    finally:
        loop.run_until_complete(service.stop())
        loop.run_until_complete(store.stop())
        loop.close()


def _ctx(memory: MemoryService, person: str, group: bool) -> ToolContext:
    kind = ConversationKind.GROUP if group else ConversationKind.DM
    return ToolContext(
        identity=Identity("telegram", person),
        conversation=Conversation("tg", "chat", kind),
        session_key="s",
        deps=make_deps(memory=memory),
        person_id=person,
    )


async def test_tools_only_touch_the_speakers_memory(memory: MemoryService) -> None:
    alice, bob = _ctx(memory, "alice", group=True), _ctx(memory, "bob", group=True)
    saved = await memory_save.invoke(alice, {"text": "alice loves the banjo"})
    assert saved.startswith("saved #")
    await memory_save.invoke(bob, {"text": "bob loves the banjo", "kind": "preference"})
    await _add_knowledge(memory, "music.md", "the banjo has five strings")
    found = await memory_search.invoke(bob, {"query": "banjo"})
    assert "bob loves the banjo" in found and "five strings" in found and "alice" not in found
    # said in the group: kept for alice in that group (bot/memory/tools.py memory_place)
    [alice_id] = [r.id for r in await memory.repo.items("alice@tg:group:chat")]
    assert await memory_forget.invoke(bob, {"item_ids": [alice_id]}) == "forgot 0 items"
    assert await memory.count("alice") == 1
    assert await memory_forget.invoke(alice, {"matching": "banjo"}) == "forgot 1 item"
    assert await memory.count("bob") == 1


async def test_the_final_owner_filter_drops_candidates_of_other_people(
    memory: MemoryService, store: Store
) -> None:
    """The keyword stage here is not scoped to owners (no owner tag in the MATCH), so it
    hands the final query other people's chunks: only its owner filters stand between them
    and alice. Two rows disagree about their owner on purpose (a chunk mid-move, say), so
    that each of the two filters is needed on its own."""
    for who, text in [
        ("alice", "alice plays the banjo"),
        ("bob", "bob plays the banjo"),
        ("carol", "carol plays the banjo"),
        ("dave", "dave plays the banjo"),
    ]:
        await memory.save(who, text)

    def disagree(conn: Any) -> None:
        # carol's item with a chunk that claims to be alice's; dave's chunk under alice's item
        conn.execute("UPDATE memory_chunks SET owner = 'alice' WHERE owner = 'carol'")
        conn.execute("UPDATE memory_items SET owner = 'alice' WHERE owner = 'dave'")

    await store.write(disagree)
    found = await memory.repo.search(["alice"], "text : (banjo)", None, None, 20, time.time())
    candidates = await store.read(
        lambda c: c.execute(
            "SELECT count(*) FROM memory_fts WHERE memory_fts MATCH 'text : (banjo)'"
        ).fetchone()[0]
    )
    assert candidates == 4  # what the keyword stage offered
    assert [row.text for row in found.rows.values()] == ["alice plays the banjo"]
    assert [found.rows[c].owner for c in found.keyword] == ["alice"]


async def test_rephrased_searches_stay_in_the_speakers_memory(memory: MemoryService) -> None:
    alice, bob = _ctx(memory, "alice", group=True), _ctx(memory, "bob", group=True)
    await memory_save.invoke(alice, {"text": "alice booked tickets to toronto"})
    await memory_save.invoke(bob, {"text": "bob booked tickets to toronto"})
    assert await memory_search.invoke(bob, {"query": "trip to canada"}) == "No matching memories."
    found = await memory_search.invoke(
        bob, {"query": "trip to canada", "rephrased": ["toronto tickets", "flights"]}
    )
    assert "bob booked tickets to toronto" in found and "alice" not in found
