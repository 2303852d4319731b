"""Choosing memory search settings on the tuning splits, and reporting them on the held-out
ones (never used for choosing). `python -m bench.memory_eval --tune [second fusion last]`.

Stages are searched in order, each around the best setting of the ones before it (starting
from the shipped defaults): the second stage (who the question names, feedback), fusion,
then the last stage (days named, neighbouring turns, coverage). The score of a setting is
recall@5 + recall@10 summed over the tuning splits (both generated sets by default), less
0.01 per feedback round; a setting counts only where fusion is at least keyword and vector
search alone, at @5 and @10, on every tuning split, with the default embedder and with the
hashing floor; when no setting of a stage does, the best one is kept and the report names
that stage (`stages_where_no_setting_held`).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.memory_data import Dataset
from bench.memory_embedders import candidate
from bench.memory_eval import ROWS, indexed, score
from bot.memory.config import MemoryConfig
from bot.memory.embedder_chain import build_embedders
from bot.memory.service import MemoryService, SearchMode

Setting = dict[str, Any]

STAGE_GRID: dict[str, list[Any]] = {
    "speaker_boost": [0.0, 0.5, 1.0, 2.0, 3.0],
    "named_weight": [0.0, 0.25, 0.5],
    "feedback_hits": [0, 1, 2],
}
GRID: dict[str, list[Any]] = {
    "fusion": ["score"],
    "vector_weight": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    "context_weight": [0.3, 0.5],
    "keyword_trust": [0.0, 0.5, 0.75, 0.9],
    "keyword_share_trust": [0.0, 0.25, 0.5, 0.9],
    "keyword_sure_lift": [0.0, 1.0],
}
RRF_GRID: dict[str, list[Any]] = {
    "fusion": ["rrf"],
    "rrf_k": [2, 5, 10, 20, 60],
    "vector_weight": [0.25, 0.5, 1.0],
    "context_weight": [0.3],
}
LAST_GRID: dict[str, list[Any]] = {
    "date_boost": [0.0, 1.0, 2.0],
    "neighbour_hits": [0, 3],
    "coverage_weight": [0.0, 0.25, 0.5, 1.0],
    "rerank_depth": [10, 20, 40],
}
STAGES: dict[str, tuple[dict[str, list[Any]], ...]] = {
    "second": (STAGE_GRID,),
    "fusion": (GRID, RRF_GRID),
    "last": (LAST_GRID,),
}

#: what a further search round (feedback) must buy, in recall@5 + recall@10: each round
#: costs about as much as the first search
_ROUND_COST = 0.01


def _settings(grids: tuple[dict[str, list[Any]], ...]) -> Iterator[Setting]:
    for grid in grids:
        for values in itertools.product(*grid.values()):
            yield dict(zip(grid, values, strict=True))


async def _recall(svc: MemoryService, data: Dataset, setting: Setting, mode: SearchMode) -> float:
    config = MemoryConfig().model_copy(update=setting)
    svc.use(config)
    scores = await score(svc, data, mode)
    print(f"  {data.name}: {scores['recall@10']:.3f} {scores['recall@5']:.3f}  {setting}")
    return float(scores["recall@10"] + scores["recall@5"]) - _ROUND_COST * config.feedback_hits


async def _holds(svc: MemoryService, data: Dataset, setting: Setting) -> bool:
    """Fusion is at least each single method, at recall@5 and at recall@10."""
    svc.use(MemoryConfig().model_copy(update=setting))
    fused = await score(svc, data, "hybrid")
    for mode in ("keyword", "vector"):
        alone = await score(svc, data, mode)
        if any(fused[k] < alone[k] for k in ("recall@5", "recall@10")):
            return False
    return True


async def _holds_everywhere(
    services: list[MemoryService], data: list[Dataset], setting: Setting
) -> bool:
    for svc, split in zip(services, data, strict=True):
        if not await _holds(svc, split, setting):
            return False  # the first miss settles it: each check is three evaluations
    return True


async def tune(sets: list[Dataset], tmp: Path, stages: list[str]) -> dict[str, Any]:
    """Choose the settings of `stages` on the tuning splits of `sets`; report them, the
    shipped defaults and keyword-only on each held-out split."""
    default = MemoryConfig()
    best: Setting = {}
    unheld: list[str] = []
    tunes = [d.split("tune") for d in sets]
    async with contextlib.AsyncExitStack() as stack:
        models, floors = [], []
        for i, data in enumerate(tunes):
            embedders = build_embedders(default.embedders, tmp)
            models.append(
                await stack.enter_async_context(indexed(data, tmp / f"t{i}.db", embedders))
            )
            floor = [candidate("hashing")]
            floors.append(await stack.enter_async_context(indexed(data, tmp / f"f{i}.db", floor)))
        for stage in stages:
            tried = []
            for s in _settings(STAGES[stage]):
                total = 0.0
                for svc, data in zip(models, tunes, strict=True):
                    total += await _recall(svc, data, best | s, "hybrid")
                tried.append((total, best | s))
            ranked = [setting for _, setting in sorted(tried, key=lambda t: -t[0])]
            for setting in ranked:
                if await _holds_everywhere(models + floors, tunes + tunes, setting):
                    best = setting
                    break
            else:  # said, not hidden: the best setting is kept, and the report names it
                best = ranked[0]
                unheld.append(stage)
    out: dict[str, Any] = {"best_on_tune": best, "stages_where_no_setting_held": unheld}
    for i, data in enumerate(sets):
        heldout = data.split("heldout")
        embedders = build_embedders(default.embedders, tmp)
        async with indexed(heldout, tmp / f"h{i}.db", embedders) as svc:
            for name, mode, setting in [("tuned", "hybrid", best), *ROWS[:2]]:
                svc.use(default.model_copy(update=setting))
                out[f"{heldout.name} {name}"] = await score(svc, heldout, mode)
    return out
