"""Memory's vectors on PostgreSQL with pgvector (bot/store/pg_vectors.py): each person's k
nearest however few vectors they hold among everyone's, an embedder switch, a table of bytes
from before the extension converted, and what doctor says on either kind of server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from bot.store import pg_vectors
from bot.store.config import StoreConfig, open_store
from bot.store.memory import NewChunk, NewItem
from bot.store.pg_memory import PgMemoryRepo
from bot.store.pg_store import PgStore

DIM = 16
MODEL = "test-model"
K = 10


def _unit(rng: np.random.Generator) -> np.ndarray[Any, Any]:
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class People:
    """Items with random vectors for a few people; what each holds, for exact answers."""

    def __init__(self, repo: PgMemoryRepo, seed: int = 7) -> None:
        self.repo = repo
        self.rng = np.random.default_rng(seed)
        self.held: dict[str, dict[int, np.ndarray[Any, Any]]] = {}

    async def give(self, owner: str, n: int) -> None:
        vectors = [_unit(self.rng) for _ in range(n)]
        base = len(self.held.get(owner, {}))
        ids = await asyncio.gather(
            *(
                self.repo.add(
                    NewItem(
                        owner,
                        "note",
                        f"{owner} note {base + i}",
                        [
                            NewChunk(
                                0, f"{owner} note {base + i}", f"{owner}-{base + i}", v.tobytes()
                            )
                        ],
                        model=MODEL,
                    )
                )
                for i, v in enumerate(vectors)
            )
        )
        chunks = await self.repo.store.read(
            lambda c: {
                int(r[1]): int(r[0])
                for r in c.execute(
                    "SELECT id, item_id FROM memory_chunks WHERE owner = ?", (owner,)
                ).fetchall()
            }
        )
        for (item_id, _), v in zip(ids, vectors, strict=True):
            self.held.setdefault(owner, {})[chunks[item_id]] = v

    def exact(self, owner: str, query: np.ndarray[Any, Any], k: int = K) -> list[int]:
        """The owner's k nearest chunk ids by cosine distance, computed here."""
        held = self.held[owner]
        return sorted(held, key=lambda cid: (1.0 - float(held[cid] @ query), cid))[:k]

    async def search(self, owner: str, query: np.ndarray[Any, Any], k: int = K) -> list[int]:
        rows = await self.repo.search([owner], None, query.tobytes(), MODEL, k, now=0.0)
        assert all(rows.rows[c].owner == owner for c in rows.vector)
        return rows.vector


@pytest_asyncio.fixture
async def pgv_store(pgvector_url: str, tmp_path: Path) -> AsyncIterator[PgStore]:
    async with open_store(StoreConfig(url=pgvector_url), tmp_path) as store:
        assert isinstance(store, PgStore) and store.pgvector
        yield store


@pytest_asyncio.fixture
async def people(pgv_store: PgStore) -> People:
    repo = PgMemoryRepo(pgv_store)
    await repo.vectors.reset_vectors(MODEL, DIM)
    return People(repo)


@pytest.fixture
def index_first_url(pgvector_url: str) -> str:
    """A database whose planner walks the HNSW index for any ORDER BY distance, as it does
    for a person it expects to hold many rows (with few dimensions it would often sort)."""
    import psycopg

    with psycopg.connect(pgvector_url, autocommit=True) as conn:
        conn.execute(
            "DO $$ BEGIN EXECUTE format("
            "'ALTER DATABASE %I SET enable_sort = off', current_database()); END $$"
        )
    return pgvector_url


async def _plan(store: PgStore, owner: str, query: np.ndarray[Any, Any]) -> str:
    """How PostgreSQL would run the obvious query (one ORDER BY distance, filtered)."""
    text = pg_vectors.vector_text(query.tobytes())
    rows = await store.read(
        lambda c: c.raw.execute(
            "EXPLAIN SELECT chunk_id FROM memory_vec WHERE owner = %s"
            " ORDER BY embedding <=> %s::vector LIMIT 10",
            (owner, text),
        ).fetchall()
    )
    return "\n".join(r[0] for r in rows)


async def test_a_person_with_few_items_among_many_gets_their_k_best(
    index_first_url: str, tmp_path: Path
) -> None:
    """A filtered HNSW walk keeps the ~40 nearest of everyone and drops the rest: for a
    person holding 5 or 100 of 2,000 vectors it returns few of theirs or none. Each person
    gets their own nearest here, the same as an exact ranking."""
    async with open_store(StoreConfig(url=index_first_url), tmp_path) as store:
        assert isinstance(store, PgStore) and store.pgvector
        repo = PgMemoryRepo(store)
        await repo.vectors.reset_vectors(MODEL, DIM)
        people = People(repo)
        for crowd in ("crowd-a", "crowd-b"):
            await people.give(crowd, 1000)
        await people.give("bob", 5)
        await people.give("alice", 100)
        query = _unit(people.rng)
        # the obvious query walks the HNSW index here: the trap is real
        assert "memory_vec_hnsw" in await _plan(store, "bob", query)
        for _ in range(5):
            query = _unit(people.rng)
            assert await people.search("bob", query) == people.exact("bob", query, 5)
            assert await people.search("alice", query) == people.exact("alice", query)


async def test_a_person_with_many_items_is_searched_through_the_graph(
    people: People, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person holding a large share walks the HNSW graph (ef_search raised for their share):
    k results, nearly all of the exact k best. A walk that comes back short is made up by an
    exact scan of that person's vectors."""
    monkeypatch.setattr(pg_vectors, "EXACT_UP_TO", 100)
    walks: list[int] = []
    walk = pg_vectors._walk

    def counting(conn: Any, table: str, query: str, owner: str, k: int, ef: int) -> list[Any]:
        rows = walk(conn, table, query, owner, k, ef)
        walks.append(len(rows))
        return rows

    monkeypatch.setattr(pg_vectors, "_walk", counting)
    await people.give("crowd", 1000)
    await people.give("carol", 300)
    await people.repo.store.write(lambda c: c.raw.execute("ANALYZE memory_vec"))
    found = 0
    for _ in range(10):
        query = _unit(people.rng)
        got = await people.search("crowd", query)
        assert len(got) == K
        found += len(set(got) & set(people.exact("crowd", query)))
    assert len(walks) == 10
    assert found >= 0.8 * 10 * K

    # too small an ef_search for carol's share: the walk is short, the exact scan is not
    monkeypatch.setattr(pg_vectors, "OVERFETCH", 0.01)
    walks.clear()
    for _ in range(3):
        query = _unit(people.rng)
        assert await people.search("carol", query) == people.exact("carol", query)
    assert walks and min(walks) < K


async def test_an_embedder_switch_makes_a_column_of_the_new_size(
    people: People, pgv_store: PgStore
) -> None:
    await people.give("alice", 3)
    repo = people.repo
    await repo.vectors.reset_vectors("other-model", 8)
    assert await repo.vectors.count_pending_chunks() == 3
    column = await pgv_store.read(
        lambda c: c.raw.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'memory_vec'::regclass AND attname = 'embedding'"
        ).fetchone()[0]
    )
    assert column == "vector(8)"
    pending = await repo.vectors.pending_chunks(10)
    v = np.ones(8, dtype=np.float32)
    stored = await repo.vectors.store_vectors(
        "other-model", [(c, v.tobytes()) for c, *_ in pending]
    )
    assert stored == 3
    # a query in the old model's space is not asked; one in the new model's is
    old = await repo.search(["alice"], None, _unit(people.rng).tobytes(), MODEL, K, now=0.0)
    assert old.vector == []
    new = await repo.search(["alice"], None, v.tobytes(), "other-model", K, now=0.0)
    assert sorted(new.vector) == sorted(c for c, *_ in pending)


async def test_vectors_stored_before_the_extension_are_converted(
    pgvector_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database used without pgvector (vectors as bytes), opened once the extension can
    be had: the same vectors, in a vector column, found by SQL."""
    unavailable = pg_vectors.VectorSupport(reason="the server has no pgvector extension")
    monkeypatch.setattr(pg_vectors, "enable_pgvector", lambda conn: unavailable)
    rng = np.random.default_rng(3)
    vectors = [_unit(rng) for _ in range(4)]
    async with open_store(StoreConfig(url=pgvector_url), tmp_path) as store:
        assert isinstance(store, PgStore) and not store.pgvector
        repo = PgMemoryRepo(store)
        await repo.vectors.reset_vectors(MODEL, DIM)
        for i, v in enumerate(vectors):
            await repo.add(
                NewItem(
                    "alice",
                    "note",
                    f"n{i}",
                    [NewChunk(0, f"n{i}", f"h{i}", v.tobytes())],
                    model=MODEL,
                )
            )
        before = await repo.search(["alice"], None, vectors[2].tobytes(), MODEL, 4, now=0.0)
    monkeypatch.undo()
    async with open_store(StoreConfig(url=pgvector_url), tmp_path) as store:
        assert isinstance(store, PgStore) and store.pgvector
        kind = await store.read(
            lambda c: c.raw.execute(
                "SELECT pg_typeof(embedding)::text FROM memory_vec LIMIT 1"
            ).fetchone()[0]
        )
        assert kind == "vector"
        after = await PgMemoryRepo(store).search(
            ["alice"], None, vectors[2].tobytes(), MODEL, 4, now=0.0
        )
    assert after.vector == before.vector and len(after.vector) == 4
    for cid, score in before.vector_score.items():
        assert after.vector_score[cid] == pytest.approx(score, abs=1e-6)


def test_float32_bytes_read_back_as_the_same_vector() -> None:
    v = np.random.default_rng(1).standard_normal(64).astype(np.float32)
    text = pg_vectors.vector_text(v.tobytes())
    back = np.array([float(x) for x in text.strip("[]").split(",")], dtype=np.float32)
    assert np.array_equal(back, v)


async def test_doctor_names_the_vector_search(make_config: Any, pgvector_url: str) -> None:
    from bot.doctor import check_storage

    config = make_config(store={"url": pgvector_url})
    checks = {name: (ok, detail) for name, ok, detail in await check_storage(config)}
    ok, detail = checks["database"]
    assert ok and "memory vector search: pgvector 0.6.2 HNSW" in detail


async def test_a_role_that_may_not_create_the_extension_falls_back(
    pgvector_server: Any, tmp_path: Path
) -> None:
    """pgvector is not a trusted extension: a database owner that is no superuser cannot
    create it. The store runs on the in-process fallback and says why."""
    import psycopg

    from testbed.pgcluster import create_database

    with psycopg.connect(pgvector_server.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE ROLE plain LOGIN")
    url = create_database(pgvector_server, "plain_db")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER DATABASE plain_db OWNER TO plain")
        conn.execute("ALTER SCHEMA public OWNER TO plain")
    plain_url = url.replace("decapod@", "plain@")
    try:
        async with open_store(StoreConfig(url=plain_url), tmp_path) as store:
            assert isinstance(store, PgStore) and not store.pgvector
            detail = store.vector_support.describe()
            assert detail.startswith("in-process fallback")
            assert "CREATE EXTENSION vector failed" in detail and "superuser" in detail
    finally:
        with psycopg.connect(pgvector_server.url("postgres"), autocommit=True) as conn:
            conn.execute("DROP DATABASE plain_db WITH (FORCE)")
            conn.execute("DROP ROLE plain")
