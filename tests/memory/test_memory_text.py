"""Chunking, FTS5 query sanitising and fusion: pure functions, checked exhaustively."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.memory.search import FusionWeights, MemoryHit, fit_budget, fuse, render_recall
from bot.memory.text import chunk_text, estimate_tokens, fts_match, query_terms
from bot.store import sqlite
from bot.store.memory import ChunkRow, SearchRows, owner_tag


def test_short_text_is_one_chunk_and_keeps_its_layout() -> None:
    text = "# Title\n\nline one\n- item two  "
    assert [c.text for c in chunk_text(text, 400, 50)] == ["# Title\n\nline one\n- item two"]
    assert chunk_text("   \n ", 400, 50) == []


def test_long_text_chunks_overlap_and_cover_every_word() -> None:
    words = [f"w{i}" for i in range(1000)]
    chunks = chunk_text(" ".join(words), 400, 50)
    assert [len(c.text.split()) for c in chunks] == [400, 400, 300]
    assert [c.seq for c in chunks] == [0, 1, 2]
    assert chunks[0].text.split()[-50:] == chunks[1].text.split()[:50]
    covered = {w for c in chunks for w in c.text.split()}
    assert covered == set(words)


@given(st.integers(1, 1200), st.integers(20, 100), st.data())
def test_chunking_invariants(n_words: int, size: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, size - 1))
    words = [f"w{i}" for i in range(n_words)]
    chunks = chunk_text("\n ".join(words), size, overlap)
    assert all(len(c.text.split()) <= size for c in chunks)
    assert chunks[0].text.split()[0] == "w0" and chunks[-1].text.split()[-1] == words[-1]
    assert {w for c in chunks for w in c.text.split()} == set(words)


def test_overlap_must_be_smaller_than_chunk() -> None:
    with pytest.raises(ValueError):
        chunk_text("a b c", 10, 10)


def test_query_terms_drop_stopwords_and_punctuation() -> None:
    assert query_terms("What is my dog's NAME?!") == ["dog", "name"]
    assert query_terms("what is it") == ["what", "is", "it"]  # nothing else left: keep them
    assert query_terms('") OR owner_tag : * NEAR(') == ["owner", "tag", "near"]
    assert query_terms("___ --- ***") == []
    assert len(query_terms(" ".join(f"word{i}" for i in range(50)))) == 16


def test_fts_match_quotes_every_term_and_scopes_owners() -> None:
    match = fts_match(["dog", "name"], ["alice", "shared"])
    assert match == (
        f'owner_tag : ({owner_tag("alice")} OR {owner_tag("shared")}) AND text : ("dog" OR "name")'
    )
    assert fts_match([], ["alice"]) is None
    assert " AND " in (fts_match(["a", "b"], ["x"], require_all=True) or "").split("text : ")[1]


def test_owner_tags_are_single_stable_tokens() -> None:
    tag = owner_tag("telegram:123")
    assert tag == owner_tag("telegram:123") != owner_tag("telegram:1234")
    assert tag[0] == "o" and tag[1:].isdigit()


@pytest.fixture(scope="module")
def fts_conn():  # type: ignore[no-untyped-def]
    conn = sqlite.connect(":memory:")
    conn.execute(
        "CREATE VIRTUAL TABLE t USING fts5(text, owner_tag,"
        " tokenize='porter unicode61 remove_diacritics 2')"
    )
    conn.execute("INSERT INTO t VALUES ('the quick brown fox', ?)", (owner_tag("alice"),))
    yield conn
    conn.close()


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_any_user_text_is_a_valid_fts_query(fts_conn, text: str) -> None:  # type: ignore[no-untyped-def]
    match = fts_match(query_terms(text), ["alice"])
    if match is not None:
        fts_conn.execute("SELECT rowid FROM t WHERE t MATCH ?", (match,)).fetchall()


@pytest.mark.parametrize(
    "text",
    [
        '"',
        "'",
        "(",
        ")",
        "*",
        "^",
        ":",
        "NEAR(a b)",
        "a AND",
        "OR OR",
        "-x",
        "{text}: y",
        "naïve café",
        "東京 タワー",
        "emoji 🐙 test",
        "x\x00y",
    ],
)
def test_hostile_queries(fts_conn, text: str) -> None:  # type: ignore[no-untyped-def]
    match = fts_match(query_terms(text), ["alice"])
    if match is not None:
        fts_conn.execute("SELECT rowid FROM t WHERE t MATCH ?", (match,)).fetchall()


def test_stemming_matches_inflections(fts_conn) -> None:  # type: ignore[no-untyped-def]
    match = fts_match(query_terms("foxes"), ["alice"])
    assert fts_conn.execute("SELECT rowid FROM t WHERE t MATCH ?", (match,)).fetchall()
    assert not fts_conn.execute(
        "SELECT rowid FROM t WHERE t MATCH ?", (fts_match(["fox"], ["bob"]),)
    ).fetchall()


def _rows(n: int) -> dict[int, ChunkRow]:
    return {i: ChunkRow(i, i, "alice", "fact", f"text {i}", "", 0.0, 0.0) for i in range(n)}


def test_rrf_rewards_agreement_and_respects_weights() -> None:
    found = SearchRows(keyword=[1, 2, 3], vector=[3, 4, 1], rows=_rows(5))
    hits = fuse(found, FusionWeights(), limit=10, now=0.0)
    assert [h.chunk_id for h in hits][:2] in ([1, 3], [3, 1])
    assert {h.chunk_id for h in hits} == {1, 2, 3, 4}
    keyword_only = fuse(found, FusionWeights(vector=0.0), limit=10, now=0.0)
    assert [h.chunk_id for h in keyword_only][:3] == [1, 2, 3]
    assert fuse(found, FusionWeights(), limit=2, now=0.0)[1].keyword_rank is not None


def test_recency_boost_prefers_recent_items() -> None:
    rows = _rows(2)
    rows[1] = ChunkRow(1, 1, "alice", "fact", "new", "", 0.0, 100 * 86400.0)
    found = SearchRows(keyword=[0, 1], vector=[], rows=rows)
    plain = fuse(found, FusionWeights(), 10, now=100 * 86400.0)
    boosted = fuse(found, FusionWeights(recency_boost=1.0, half_life_days=1), 10, 100 * 86400.0)
    assert [h.chunk_id for h in plain] == [0, 1]
    assert [h.chunk_id for h in boosted] == [1, 0]


@given(
    st.lists(st.text(min_size=1, max_size=3000), min_size=0, max_size=12),
    st.integers(0, 800),
)
def test_recall_block_stays_within_budget(texts: list[str], budget: int) -> None:
    hits = [
        MemoryHit(i, i, "alice", "note", t, "", 1.0 / (i + 1), 0.0, 0.0)
        for i, t in enumerate(texts)
    ]
    kept = fit_budget(hits, budget)
    assert estimate_tokens(render_recall(kept)) <= budget
    assert [h.item_id for h in kept] == list(range(len(kept)))


def test_long_hit_is_cut_to_fit() -> None:
    hits = [MemoryHit(1, 1, "shared", "knowledge", "word " * 2000, "guide.md", 1.0, 0.0, 0.0)]
    kept = fit_budget(hits, 100)
    block = render_recall(kept)
    assert kept and kept[0].text.endswith("…") and estimate_tokens(block) <= 100
    assert "[knowledge: guide.md]" in block
    assert render_recall([]) == ""
