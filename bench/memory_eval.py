"""Memory retrieval quality: recall@5 and recall@10 of keyword-only, vector-only and hybrid
search over a data set of dated conversation turns and questions with evidence turns.

Every turn is saved as one memory item of the conversation's person; every question is a
search in that person's memory; recall@k is the share of a question's evidence turns found
in the first k distinct turns, averaged over questions. See bench/data/README.md for the
data format (the shipped synthetic set, LoCoMo and LongMemEval files are all accepted).

The default embedder is deterministic (hashed words and character trigrams), so the figures
are reproducible anywhere; `--model DIR` evaluates a local model2vec model instead.

    python -m bench.memory_eval [--data FILE] [--model DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import math
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.memory.config import MemoryConfig
from bot.memory.embedders import Embedder, Model2VecEmbedder
from bot.memory.service import MemoryService
from bot.memory.text import STOPWORDS
from bot.security.redact import default_redactor
from bot.store import Store

DATA = Path(__file__).parent / "data" / "memory_eval.json"
MODES = ("keyword", "vector", "hybrid")
KS = (5, 10)
_WORD = re.compile(r"[^\W_]+")


@dataclass
class Turn:
    id: str
    date: str
    speaker: str
    text: str


@dataclass
class Conversation:
    id: str
    person: str
    turns: list[Turn] = field(default_factory=list)


@dataclass
class Question:
    id: str
    conversation: str
    question: str
    evidence: list[str]


@dataclass
class Dataset:
    name: str
    conversations: list[Conversation]
    questions: list[Question]


def _native(data: dict[str, Any]) -> Dataset:
    convs = [
        Conversation(c["id"], c.get("person", c["id"]), [Turn(**t) for t in c["turns"]])
        for c in data["conversations"]
    ]
    questions = [
        Question(q["id"], q["conversation"], q["question"], list(q["evidence"]))
        for q in data["questions"]
    ]
    return Dataset(data.get("name", "unnamed"), convs, questions)


def _locomo(samples: list[dict[str, Any]]) -> Dataset:
    """LoCoMo: samples with `conversation` (session_N lists of {speaker, dia_id, text} and
    session_N_date_time) and `qa` ({question, evidence: [dia_id]}). Speakers' names are
    part of what is asked about, so they are kept in the text."""
    convs, questions = [], []
    for sample in samples:
        cid = str(sample["sample_id"])
        conv = Conversation(cid, cid)
        sessions = sample["conversation"]
        n = 1
        while f"session_{n}" in sessions:
            date = str(sessions.get(f"session_{n}_date_time", ""))
            for t in sessions[f"session_{n}"]:
                conv.turns.append(
                    Turn(t["dia_id"], date, t["speaker"], f"{t['speaker']}: {t['text']}")
                )
            n += 1
        convs.append(conv)
        for i, qa in enumerate(sample.get("qa", [])):
            if qa.get("evidence"):
                questions.append(Question(f"{cid}-q{i}", cid, qa["question"], list(qa["evidence"])))
    return Dataset("locomo", convs, questions)


def _longmemeval(items: list[dict[str, Any]]) -> Dataset:
    """LongMemEval: one haystack per question; evidence = turns marked `has_answer`."""
    convs, questions = [], []
    for item in items:
        qid = str(item["question_id"])
        conv, evidence = Conversation(qid, qid), []
        dates = item.get("haystack_dates", [])
        for s, session in enumerate(item["haystack_sessions"]):
            for t, turn in enumerate(session):
                tid = f"{qid}-s{s}-t{t}"
                date = str(dates[s]) if s < len(dates) else ""
                conv.turns.append(Turn(tid, date, turn["role"], turn["content"]))
                if turn.get("has_answer"):
                    evidence.append(tid)
        convs.append(conv)
        if evidence:
            questions.append(Question(qid, qid, item["question"], evidence))
    return Dataset("longmemeval", convs, questions)


def load(path: Path) -> Dataset:
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        return _native(data)
    if data and "qa" in data[0]:
        return _locomo(data)
    if data and "haystack_sessions" in data[0]:
        return _longmemeval(data)
    raise ValueError(f"{path}: not a format this evaluation reads (see bench/data/README.md)")


class HashingEmbedder:
    """Deterministic vectors from hashed words and character trigrams: close for texts
    that share words or word parts ("allergic"/"allergy", "photograph"/"photography")."""

    def __init__(self, dim: int = 256) -> None:
        self.name = f"hashing:{dim}"
        self.dim = dim

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * self.dim
        for word in _WORD.findall(text.lower()):
            if word in STOPWORDS:
                continue
            marked = f"<{word}>"
            features = [(word, 1.0)] + [(marked[i : i + 3], 0.4) for i in range(len(marked) - 2)]
            for feature, weight in features:
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                sign = 1.0 if digest[4] & 1 else -1.0
                vec[int.from_bytes(digest[:4], "little") % self.dim] += sign * weight
        norm = math.sqrt(sum(x * x for x in vec))
        return [x / norm for x in vec] if norm else vec

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(t) for t in texts]


async def _evaluate(data: Dataset, embedder: Embedder, db: Path) -> dict[str, Any]:
    by_id = {c.id: c for c in data.conversations}
    totals = {mode: dict.fromkeys(KS, 0.0) for mode in MODES}
    async with Store(db) as store:
        config = MemoryConfig(embedders=[], recency_boost=0.0)
        service = MemoryService(
            store, config, db.parent, embedders=[embedder], redact=default_redactor().redact
        )
        await service.start(watch=False)
        await service.wait_ready()
        if service.status().mode != "hybrid":
            raise RuntimeError(f"vector search unavailable: {service.status().reason}")
        for conv in data.conversations:
            for turn in conv.turns:
                await service.save(conv.person, turn.text, kind="note", source=turn.id)
        for q in data.questions:
            person = by_id[q.conversation].person
            for mode in MODES:
                hits = await service.search(person, q.question, limit=max(KS) * 2, mode=mode)
                ranked = list(dict.fromkeys(h.source for h in hits))
                for k in KS:
                    found = len(set(ranked[:k]) & set(q.evidence))
                    totals[mode][k] += found / len(q.evidence)
        await service.stop()
    n = len(data.questions)
    return {mode: {f"recall@{k}": round(totals[mode][k] / n, 4) for k in KS} for mode in MODES}


@contextlib.contextmanager
def _quiet_memory_log() -> Iterator[None]:
    """The benchmark rebuilds vector indexes on purpose; those warnings are not news."""
    logger = logging.getLogger("decapod.memory")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def run(quick: bool = False, data_path: Path = DATA, model: Path | None = None) -> dict[str, Any]:
    """Evaluate the data set; prints a table and returns the figures. `quick` changes
    nothing: the shipped set takes about a second."""
    data = load(data_path)
    embedder: Embedder = Model2VecEmbedder(model) if model else HashingEmbedder()
    with tempfile.TemporaryDirectory(prefix="decapod-eval-") as tmp, _quiet_memory_log():
        scores = asyncio.run(_evaluate(data, embedder, Path(tmp) / "eval.db"))
    best_single = {
        f"recall@{k}": max(scores["keyword"][f"recall@{k}"], scores["vector"][f"recall@{k}"])
        for k in KS
    }
    result = {
        "dataset": data.name,
        "turns": sum(len(c.turns) for c in data.conversations),
        "questions": len(data.questions),
        "embedder": embedder.name,
        "scores": scores,
        "hybrid_beats_both": all(scores["hybrid"][m] > best_single[m] for m in best_single),
    }
    print(
        f"Memory retrieval: {result['dataset']}, {result['turns']} turns, "
        f"{result['questions']} questions, embedder {result['embedder']}"
    )
    print(f"{'mode':>8} {'recall@5':>9} {'recall@10':>10}")
    for mode in MODES:
        print(f"{mode:>8} {scores[mode]['recall@5']:>9.3f} {scores[mode]['recall@10']:>10.3f}")
    print(f"hybrid beats both single methods: {result['hybrid_beats_both']}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", type=Path, help="a local model2vec model folder")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = run(data_path=args.data, model=args.model)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
