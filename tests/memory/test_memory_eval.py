"""The retrieval evaluation: LoCoMo's JSON read as published, the generated set (seeded,
large, split), and the table's rows, with the shipped default beating keyword search on the
held-out split."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bench import memory_eval
from bench.memory_data import load, parse_locomo_time
from bench.memory_gen import generate
from bot.memory.text import STOPWORDS

SAMPLE: list[dict[str, Any]] = [
    {
        "sample_id": "conv-1",
        "conversation": {
            "speaker_a": "Caroline",
            "speaker_b": "Melanie",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Caroline", "dia_id": "D1:1", "text": "Hey Mel! Good to see you!"},
                {"speaker": "Melanie", "dia_id": "D1:2", "text": "How was the road trip?"},
                {
                    "speaker": "Caroline",
                    "dia_id": "D1:3",
                    "text": "Amazing, we hiked to a waterfall yesterday.",
                    "img_url": ["https://example.invalid/x.jpg"],
                    "blip_caption": "a photo of a waterfall in a forest",
                },
            ],
            "session_2_date_time": "10:37 am on 27 June, 2023",
            "session_2": [
                {"speaker": "Melanie", "dia_id": "D2:1", "text": "I signed up for pottery."},
                {"speaker": "Caroline", "dia_id": "D2:2", "text": "I adopted a greyhound!"},
            ],
        },
        "qa": [
            {"question": "What did Caroline do on the road trip?", "answer": "hiked",
             "evidence": ["D1:3"], "category": 4},
            {"question": "When did Caroline hike to a waterfall?", "answer": "7 May 2023",
             "evidence": ["D1:3"], "category": 2},
            {"question": "What are Melanie's and Caroline's new hobbies and pets?",
             "answer": "pottery; greyhound", "evidence": ["D2:1; D2:2"], "category": 1},
            {"question": "What did Melanie adopt?", "adversarial_answer": "a greyhound",
             "evidence": ["D2:2"], "category": 5},
            {"question": "What is Caroline's favourite colour?", "answer": "unknown",
             "evidence": [], "category": 3},
        ],
    }
]  # fmt: skip


@pytest.fixture
def locomo_file(tmp_path: Path) -> Path:
    path = tmp_path / "locomo_small.json"
    path.write_text(json.dumps(SAMPLE))
    return path


def test_locomo_reader_takes_the_published_format(locomo_file: Path) -> None:
    data = load(locomo_file)
    (conv,) = data.conversations
    assert [t.id for t in conv.turns] == ["D1:1", "D1:2", "D1:3", "D2:1", "D2:2"]
    reply = conv.turns[2]
    assert reply.speaker == "Caroline" and reply.context == "Melanie: How was the road trip?"
    assert reply.text.endswith("[shares a photo: a photo of a waterfall in a forest]")
    assert reply.at == parse_locomo_time("1:56 pm on 8 May, 2023") + 2
    assert conv.turns[3].context == ""  # a new session starts afresh
    # category 5 is skipped by default, a question without evidence always
    assert [q.category for q in data.questions] == [4, 2, 1]
    assert data.questions[2].evidence == ["D2:1", "D2:2"]
    assert [q.category for q in load(locomo_file, with_adversarial=True).questions] == [4, 2, 1, 5]
    assert parse_locomo_time("12:05 am on 1 January, 2024") == 1704067500.0
    assert parse_locomo_time("sometime") is None


def test_evaluation_reports_rows_categories_and_latency(
    locomo_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = memory_eval.run(data_path=locomo_file)
    rows = result["rows"]
    assert list(rows) == [
        "default",
        "keyword",
        "vector",
        "rrf k=60",
        "default, no second stage",
        "default, no coverage rerank",
        "default, no date boost",
        "default + neighbour turns",
        "default, questions not demoted",
        "default, no session boost",
        "default, no follow-up answers",
        "default, no sure lift",
        "default, fusion before",
        "default, save() defaults",
        "keyword, save() defaults",
    ]
    assert rows["default"]["embedder"] == "potion:potion-base-8M"
    for row in rows.values():
        assert set(row["categories"]) == {"multi-hop", "temporal", "single-hop"}
        assert 0.0 <= row["recall@5"] <= row["recall@10"] <= 1.0
        assert row["p50_ms"] <= row["p95_ms"]
    assert rows["default"]["recall@5"] == 1.0  # five turns: everything is within reach
    assert "default" in capsys.readouterr().out


def test_generated_set_is_seeded_large_and_split() -> None:
    first, again = generate(seed=7), generate(seed=7)
    assert first == again and first != generate(seed=8)
    questions = [q for s in first for q in s["qa"] if q["category"] != 5]
    assert len(questions) >= 1000
    splits = Counter(s["sample_id"].split("-")[1] for s in first)
    assert splits == {"tune": 12, "heldout": 12}
    assert set(Counter(q["category"] for q in questions)) == {1, 2, 3, 4}
    assert sum(len(q["evidence"]) > 1 for q in questions) >= 150  # multi-hop
    assert len({s["conversation"]["speaker_a"] for s in first}) >= 10  # several people
    for sample in first:
        said = {
            t["dia_id"] for k, v in sample["conversation"].items() if k[-1].isdigit() for t in v
        }
        assert all(set(q["evidence"]) <= said for q in sample["qa"])


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in STOPWORDS}


def test_multi_hop_questions_need_every_evidence_turn() -> None:
    """No multi-hop question can be answered from one turn: a list question takes one part
    of its answer from each turn, and a bridge question ("What happened with Maria's
    dog?") is answered by a later turn that shares no word with it, tied to the earlier
    turn that says what the question asks about by a name ("Pepper")."""
    bridges = 0
    for sample in generate(seed=7):
        conv = sample["conversation"]
        said = {t["dia_id"]: t for k, v in conv.items() if k[-1].isdigit() for t in v}
        people = {conv["speaker_a"].lower(), conv["speaker_b"].lower(), "s"}
        for q in (q for q in sample["qa"] if q["category"] == 1):
            turns = [said[e]["text"] for e in q["evidence"]]
            sessions = {e.split(":")[0] for e in q["evidence"]}
            assert len(set(turns)) == len(turns) >= 2, q
            parts = re.split(r"; | / ", q["answer"])
            holding = [[t for t in turns if p in t] for p in parts]
            if len(parts) > 1:
                assert all(len(h) == 1 for h in holding), q
                assert {h[0] for h in holding} == set(turns), q
                continue
            bridges += 1
            (later,) = holding[0]
            (earlier,) = [t for t in turns if t != later]
            assert len(sessions) == 2, q
            assert not (_words(q["question"]) - people) & _words(later), q
            assert _words(later) & _words(earlier), q
            assert q["answer"] not in earlier
    assert bridges >= 40


#: how far below the better single method fusion may fall on a held-out half: one question
#: in 600-800 moves recall by ~0.002, and a tie is often a question's half evidence turn
TOLERANCE = 0.005


@pytest.mark.slow
@pytest.mark.timeout(600)  # a whole evaluation: about 80 s of CPU alone, twice that when busy
@pytest.mark.parametrize("hard", [False, True], ids=["first set", "second set"])
def test_default_beats_keyword_search_on_the_heldout_split(hard: bool) -> None:
    """The shipped fusion is at least the better of keyword and vector search alone (within
    TOLERANCE) on both generated sets' held-out halves, at recall@5 and @10; its weights were
    chosen on the tuning halves (docs/performance.md, "Fusion weights for potion-base-8M")."""
    result = memory_eval.run(quick=True, embedders=("hashing",), hard=hard)
    rows = result["rows"]
    assert result["dataset"] == f"{'memory_gen_hard' if hard else 'memory_gen'} (heldout)"
    plain = rows["default, no second stage"]
    for k in ("recall@5", "recall@10"):
        better = max(rows["keyword"][k], rows["vector"][k])
        assert rows["default"][k] >= better - TOLERANCE, (k, rows["default"][k], better)
        assert rows["default"][k] > rows["keyword"][k]
    if not hard:  # the second set's questions name nobody: the second stage has little to do
        for k in ("recall@5", "recall@10"):
            assert rows["default"][k] > plain[k]  # the second stage pays
        multi_hop = rows["default"]["categories"]["multi-hop"]["recall@10"]
        # and most on questions over several turns
        assert multi_hop > plain["categories"]["multi-hop"]["recall@10"] + 0.05
    # with no model but the hashing floor, fusion stays above either half at @10; at @5 the
    # weight chosen for potion-base-8M puts its weak vectors' picks above keyword's
    floor = rows["default fusion, hashing"]["recall@10"]
    assert floor >= max(rows["keyword"]["recall@10"], rows["vector, hashing"]["recall@10"])
