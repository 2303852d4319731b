"""A conversation saved one turn at a time with save()'s defaults: each reply keeps the turn
it answers, as if it had been passed as `context`."""

from __future__ import annotations

import datetime as dt

from bot.memory.service import MemoryService

SAID = dt.datetime(2023, 5, 8, 13, 56, tzinfo=dt.UTC).timestamp()


async def _contexts(memory: MemoryService, owner: str) -> list[str]:
    hits = await memory.search(owner, "said", mode="keyword", limit=50)
    return [h.context for h in sorted(hits, key=lambda h: h.item_id)]


async def test_a_reply_saved_without_context_keeps_the_turn_before(
    memory: MemoryService,
) -> None:
    await memory.save("alice", "Jon: So how was the road trip?")
    reply = await memory.save("alice", "Maria: Amazing! We hiked to a waterfall.")
    # found by the words of the question it answers, which it does not hold itself
    hits = await memory.search("alice", "road trip", mode="keyword")
    assert reply in [h.item_id for h in hits]
    (row,) = [h for h in hits if h.item_id == reply]
    assert "So how was the road trip?" in row.context
    assert "road trip" not in row.text
    # who asked is not kept: a question naming Jon must not find every reply made to him
    assert "Jon" not in row.context


async def test_a_named_speaker_counts_as_a_turn_too(memory: MemoryService) -> None:
    await memory.save("alice", "How did the kayak tour go?", speaker="Jon", at=SAID)
    reply = await memory.save("alice", "Wet, but fun", speaker="Maria", at=SAID + 30)
    hits = await memory.search("alice", "kayak tour", mode="keyword")
    assert reply in [h.item_id for h in hits]


async def test_only_a_turn_said_just_before_is_taken(memory: MemoryService) -> None:
    # a day apart: another session, not the turn this one answers
    await memory.save("alice", "Jon: Any plans for the lighthouse?", at=SAID)
    late = await memory.save("alice", "Maria: Not yet, said I would think", at=SAID + 86400)
    # facts the model saves have no speaker: they neither get nor give a turn before
    await memory.save("alice", "Prefers green tea, said on Monday", at=SAID + 86410)
    fact = await memory.save("alice", "Allergic to cats, said twice", at=SAID + 86420)
    await memory.save("bob", "Jon: the lighthouse tour is on", at=SAID + 86425)
    turn = await memory.save("alice", "Maria: I said yes", at=SAID + 86430)
    hits = {h.item_id: h for h in await memory.search("alice", "said", mode="keyword", limit=50)}
    assert "lighthouse" not in hits[late].context
    assert "after:" not in hits[fact].context
    # the turn before it is a fact, not a turn; and bob's memory is not alice's
    assert "after:" not in hits[turn].context


async def test_context_given_is_kept_as_given(memory: MemoryService) -> None:
    await memory.save("alice", "Jon: Did you see the eclipse?", at=SAID)
    reply = await memory.save(
        "alice", "Maria: Yes, said it was cloudy", at=SAID + 5, context="Jon: the comet?"
    )
    hits = {h.item_id: h for h in await memory.search("alice", "said", mode="keyword")}
    assert "comet" in hits[reply].context and "eclipse" not in hits[reply].context
