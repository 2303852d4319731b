"""Memory on every store backend: SQLite (FTS5, sqlite-vec), PostgreSQL without pgvector
(tsvector, vectors ranked in process) and PostgreSQL with pgvector (vectors in a vector column,
HNSW-indexed, ranked in SQL). The same per-person isolation on each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.errors import IdentityRefused
from bot.memory.service import MemoryRequestError, MemoryService
from bot.memory.text import SEARCHED, fts_match
from bot.messages import Identity
from bot.store import Conn, Store
from bot.store.config import StoreConfig, open_store
from bot.store.pg_memory import PgMemoryRepo, tsquery
from tests.deps import REDACT
from tests.memory.conftest import memory_config

#: each backend, and the database fixture it runs on
BACKENDS = {"sqlite": None, "pg-fallback": "pg_url", "pg-pgvector": "pgvector_url"}


@pytest_asyncio.fixture(params=list(BACKENDS))
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    database = BACKENDS[request.param]
    if database is None:
        config = StoreConfig()
    else:
        config = StoreConfig(url=request.getfixturevalue(database))
    async with open_store(config, tmp_path) as store:
        # each PostgreSQL run is the vector search it is named after
        assert getattr(store, "pgvector", False) == (request.param == "pg-pgvector")
        yield store


@pytest_asyncio.fixture
async def service(
    any_store: Store, tiny_model: Path, tmp_path: Path
) -> AsyncIterator[MemoryService]:
    svc = MemoryService(any_store, memory_config(tiny_model), tmp_path / "home", redact=REDACT)
    await svc.start(watch=False)
    await svc.wait_ready()
    yield svc
    await svc.stop()


def test_the_fts5_expression_becomes_a_tsquery() -> None:
    assert tsquery('owner_tag : (o1 OR o2) AND text : ("tea" OR "berlin")') == "tea | berlin"
    assert tsquery('owner_tag : (o1) AND text : ("tea" AND "berlin")') == "tea & berlin"
    assert tsquery("owner_tag : (o1) AND text : ()") is None


def test_all_words_stay_required_over_the_text_and_its_context() -> None:
    both = fts_match(["tea", "berlin"], ["o1", "o2"], require_all=True, columns=SEARCHED)
    either = fts_match(["tea", "berlin"], ["o1", "o2"], columns=SEARCHED)
    assert both is not None and either is not None
    assert tsquery(both) == "tea & berlin"
    assert tsquery(either) == "tea | berlin"


async def test_save_search_forget_per_person(service: MemoryService, any_store: Store) -> None:
    assert isinstance(service.repo, PgMemoryRepo) == (any_store.backend == "postgresql")
    await service.save("alice", "alice drinks oolong every morning")
    await service.save("alice", "alice lives in berlin")
    await service.save("bob", "bob drinks oolong too")

    hits = await service.search("alice", "oolong", mode="keyword")
    assert [h.text for h in hits] == ["alice drinks oolong every morning"]
    assert all(h.owner == "alice" for h in hits)

    # by meaning: "matcha" is near "oolong" in the tiny model, and no word is shared
    near = await service.search("alice", "matcha", mode="vector")
    assert near and near[0].text == "alice drinks oolong every morning"
    assert near[0].vector_rank == 1 and near[0].keyword_rank is None
    assert all(h.owner == "alice" for h in near)

    gone = await service.forget("alice", matching="oolong")
    assert [r.text for r in gone] == ["alice drinks oolong every morning"]
    assert await service.search("alice", "oolong", mode="keyword") == []
    assert [h.text for h in await service.search("bob", "oolong", mode="keyword")] == [
        "bob drinks oolong too"
    ]
    assert await service.count("alice") == 1 and await service.count("bob") == 1


async def test_saying_it_again_touches_the_item(service: MemoryService) -> None:
    first = await service.save("alice", "alice plays the banjo", at=1000.0)
    again = await service.save("alice", "alice plays the banjo", at=2000.0)
    assert first == again
    [row] = await service.repo.items("alice")
    assert row.updated_at == 2000.0


async def test_postgresql_vectors_need_no_sqlite_vec(
    pg_url: str, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without sqlite-vec in the process, PostgreSQL still stores, ranks and forgets vectors:
    a forgotten item leaves no vector behind."""
    from bot.store import sqlite

    monkeypatch.setattr(sqlite, "vec_available", lambda: False)
    async with open_store(StoreConfig(url=pg_url), tmp_path) as store:
        svc = MemoryService(store, memory_config(tiny_model), tmp_path / "home", redact=REDACT)
        await svc.start(watch=False)
        await svc.wait_ready()
        try:
            await svc.save("alice", "alice drinks oolong every morning")
            near = await svc.search("alice", "matcha", mode="vector")
            assert [h.text for h in near] == ["alice drinks oolong every morning"]
            await svc.forget("alice", matching="oolong")

            def left(conn: Any) -> tuple[int, int]:
                vecs = conn.execute("SELECT count(*) FROM memory_vec").fetchone()[0]
                orphans = conn.execute("SELECT count(*) FROM memory_vec_orphans").fetchone()[0]
                return int(vecs), int(orphans)

            assert await store.read(left) == (0, 0)
        finally:
            await svc.stop()


async def test_linking_moves_vectors_with_their_items(service: MemoryService) -> None:
    """Joining bob to alice moves bob's items with their vectors (read back and written again
    under alice: bytes on SQLite and the fallback, a vector column with pgvector): alice finds
    them by meaning, and nothing is left under bob. A text both remembered is kept once."""
    await service.save("bob", "bob drinks oolong every morning")
    for owner in ("alice", "bob"):
        await service.save(owner, "the office plant is a fern")
    code = await service.create_link_code("alice")
    assert await service.redeem_link_code("bob", code) == "alice"
    near = await service.search("alice", "matcha", mode="vector")
    assert [h.text for h in near][:1] == ["bob drinks oolong every morning"]
    assert await service.count("alice") == 2
    assert await service.search("bob", "matcha", mode="vector") == []


async def test_a_groups_items_stay_in_that_group_and_follow_a_link(service: MemoryService) -> None:
    """What alice said in a DM is found only in private places, what she said in a group
    only there, by words and by meaning; a link moves both, with what the joined account had
    said there before; forgetting everywhere (a DM's /forget all) takes both."""
    group, other = "test:group:g1", "test:group:g2"
    await service.save("alice", "alice drinks oolong every morning")
    await service.save("alice", "alice plays the guitar on tuesday", place=group)

    def texts(hits: list[Any]) -> list[str]:
        return [h.text for h in hits]

    for mode in ("keyword", "vector"):
        private = texts(await service.search("alice", "oolong guitar", mode=mode))
        in_group = texts(await service.search("alice", "oolong guitar", mode=mode, place=group))
        elsewhere = await service.search("alice", "oolong guitar", mode=mode, place=other)
        assert private == ["alice drinks oolong every morning"], mode
        assert in_group == ["alice plays the guitar on tuesday"], mode
        assert elsewhere == [], mode
    assert await service.forget("alice", matching="oolong", place=group) == []

    await service.save("alice-elsewhere", "someone else said banjo", place=group)
    code = await service.create_link_code("alice")
    assert await service.redeem_link_code("alice-elsewhere", code) == "alice"
    assert await service.every_owner("alice-elsewhere") == ["alice-elsewhere"]
    moved = texts(await service.search("alice", "guitar banjo", mode="keyword", place=group))
    assert sorted(moved) == ["alice plays the guitar on tuesday", "someone else said banjo"]

    assert await service.count("alice") == 3
    with pytest.raises(MemoryRequestError):
        await service.forget("alice", everything=True, everywhere=True, place=group)
    private = await service.forget("alice", everything=True)  # the private place's only
    assert [r.owner for r in private] == ["alice"]
    assert len(await service.forget("alice", everything=True, everywhere=True)) == 2
    assert await service.search("alice", "guitar", mode="keyword", place=group) == []


async def test_an_id_that_reads_as_a_group_owner_is_never_made(any_store: Store) -> None:
    """A console user named "bob@test:group:g1" would be the person whose private items'
    owner is console:bob's in group g1: refused where person ids are made, so an owner
    holding `@<channel>:group:` is always a group's."""
    for name in ("bob@test:group:g1", "bob@test:channel:c", "bob@test:group:"):
        with pytest.raises(IdentityRefused, match="marks a group"):
            await any_store.identities.touch(Identity("console", name))
    assert await any_store.identities.person_id("console:bob@test:group:g1") is None
    for name in ("bob@corp", "bob@test:groupie", "bob@test"):
        assert await any_store.identities.touch(Identity("console", name)) == f"console:{name}"


async def test_an_identity_stored_before_the_check_is_still_recognised(any_store: Store) -> None:
    """Only a new identity is refused: one recorded before, with its person id (here merged
    into another's), keeps being seen."""
    key = "console:bob@test:group:g1"

    def stored_before(conn: Conn) -> None:
        conn.execute(
            """INSERT INTO identities (key, channel, user_id, display_name, is_bot, person_id,
               first_seen, last_seen) VALUES (?, 'console', 'bob@test:group:g1', '', 0,
               'telegram:7', 0, 0)""",
            (key,),
        )

    await any_store.write(stored_before)

    identity = Identity("console", "bob@test:group:g1")
    assert await any_store.identities.touch(identity) == "telegram:7"

    def stored_as_its_own_person(conn: Conn) -> None:
        conn.execute(
            """INSERT INTO identities (key, channel, user_id, display_name, is_bot, person_id,
               first_seen, last_seen) VALUES (?, 'console', 'eve@test:group:g1', '', 0, ?, 0, 0)""",
            ("console:eve@test:group:g1", "console:eve@test:group:g1"),
        )

    await any_store.write(stored_as_its_own_person)
    with pytest.raises(IdentityRefused, match="marks a group"):  # its person id reads as a group's
        await any_store.identities.touch(Identity("console", "eve@test:group:g1"))


async def test_an_id_holding_the_place_mark_is_its_own_person(service: MemoryService) -> None:
    """A console user named "bob@corp" is a person of their own: linking "console:bob" moves
    bob's items and his group's, never bob@corp's, and neither is listed among the other's."""
    group = "test:group:g1"
    await service.save("console:bob@corp", "corp bob keeps the oolong")
    await service.save("console:bob@corp", "corp bob said banjo", place=group)
    await service.save("console:bob", "bob plays the guitar", place=group)
    assert await service.every_owner("console:bob") == ["console:bob", f"console:bob@{group}"]
    code = await service.create_link_code("alice")
    assert await service.redeem_link_code("console:bob", code) == "alice"
    assert await service.count("console:bob@corp") == 2
    assert await service.every_owner("alice") == ["alice", f"alice@{group}"]
    assert await service.count("alice") == 1
