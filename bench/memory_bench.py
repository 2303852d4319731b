"""P6: hybrid memory search latency for one person among 100, at 10k and 100k stored items.

Items are generated sentences over a Zipf-like vocabulary, each said by one of two speakers
("Maria: ..."), some naming a pet or a place, with random unit vectors of the configured
dimension; every query names a speaker, so every search also runs its second round (the
question again without the name). The database is built once per size under a temporary
folder, then each query runs through MemoryService.search (FTS5 BM25 + sqlite-vec KNN +
fusion + second stage + last stage), the path recall takes, and once more without the last
stage (bot/memory/rerank.py) to show its cost. Query vectors come from the same random
embedder.

    python -m bench.memory_bench [--quick] [--dim 256] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import median, pct
from bot.memory.config import MemoryConfig
from bot.memory.service import MemoryService, SearchMode
from bot.memory.text import text_hash
from bot.security.redact import default_redactor
from bot.store import Store
from bot.store.config import StoreConfig, open_store
from bot.store.memory import NewChunk, NewItem

OWNERS = 100
SPEAKERS = ("Maria", "Jon")
#: names in what was said ("Pepper", "Lisbon"): what pseudo-relevance feedback searches again
NAMES = ("Pepper", "Lisbon", "Subaru", "Biscuit", "Toronto", "Mochi", "Kyoto", "Rocket")
QUERIES = 300
TARGETS_MS = {10_000: 15.0, 100_000: 100.0}  # p95, from BENCHMARKS.md


class RandomUnitEmbedder:
    """A random unit vector per text, seeded by the text: stands in for a real model's
    output at no cost, so only search itself is timed."""

    def __init__(self, dim: int) -> None:
        self.name = f"bench-random:{dim}"
        self.dim = dim

    def vectors(self, texts: list[str]) -> Any:
        import numpy as np

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            out[i] = np.random.default_rng(seed).standard_normal(self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self.vectors(texts)]


def _vocabulary(rng: random.Random, size: int = 5000) -> tuple[list[str], list[float]]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "da", "fe"]
    words = sorted({"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(size * 2)})
    rng.shuffle(words)
    words = words[:size]
    return words, [1.0 / (rank + 1) for rank in range(len(words))]


def _sentence(rng: random.Random, words: list[str], weights: list[float], n: int) -> str:
    return " ".join(rng.choices(words, weights=weights, k=n))


def _open(path: Path, url: str | None) -> Store:
    """The SQLite file at `path`, or the PostgreSQL database at `url` (P6 pg,
    bench/pg_bench.py)."""
    return open_store(StoreConfig(url=url), path.parent) if url else Store(path)


async def _build(
    path: Path, items: int, embedder: RandomUnitEmbedder, seed: int, url: str | None = None
) -> None:
    rng = random.Random(seed)
    words, weights = _vocabulary(rng)
    async with _open(path, url) as store:
        service = MemoryService(
            store, MemoryConfig(embedders=[]), path.parent, redact=default_redactor().redact
        )
        await service.repo.vectors.reset_vectors(embedder.name, embedder.dim)
        for start in range(0, items, 500):  # the writer runs queued writes in one transaction
            texts = [
                f"{rng.choice(SPEAKERS)}: {_sentence(rng, words, weights, rng.randint(8, 30))}"
                + (f" with {rng.choice(NAMES)}" if rng.random() < 0.3 else "")
                for _ in range(500)
            ]
            vectors = embedder.vectors(texts)
            await asyncio.gather(
                *(
                    service.repo.add(
                        NewItem(
                            f"person-{(start + i) % OWNERS}",
                            "note",
                            text,
                            [NewChunk(0, text, text_hash(text), vectors[i].tobytes())],
                            model=embedder.name,
                        )
                    )
                    for i, text in enumerate(texts[: items - start])
                )
            )


async def _measure(
    path: Path, embedder: RandomUnitEmbedder, seed: int, url: str | None = None
) -> dict[str, Any]:
    rng = random.Random(seed + 1)
    words, weights = _vocabulary(random.Random(seed))
    out: dict[str, Any] = {}
    async with _open(path, url) as store:
        # the same search with and without the last stage (bot/memory/rerank.py), to show
        # what it costs
        service, plain = (
            MemoryService(
                store,
                MemoryConfig(recency_boost=0.1, **setting),
                path.parent,
                embedders=[embedder],
                redact=default_redactor().redact,
            )
            for setting in ({}, {"coverage_weight": 0.0, "date_boost": 0.0})
        )
        for svc in (service, plain):
            await svc.start(watch=False)
            await svc.wait_ready()
            assert svc.status().embedder == embedder.name, svc.status()
        person = "person-7"
        runs: dict[str, tuple[MemoryService, SearchMode]] = {
            "hybrid": (service, "hybrid"),
            "keyword": (service, "keyword"),
            "vector": (service, "vector"),
            "hybrid, no last stage": (plain, "hybrid"),
        }
        modes = list(runs)
        samples: dict[str, list[float]] = {m: [] for m in modes}
        returned = dict.fromkeys(modes, 0)
        for n in range(QUERIES + 20):
            query = f"{rng.choice(SPEAKERS)} {_sentence(rng, words, weights, rng.randint(2, 6))}"
            k = n % len(modes)
            for name in modes[k:] + modes[:k]:  # rotate: no mode always goes first
                svc, mode = runs[name]
                start = time.perf_counter()
                hits = await svc.search(person, query, limit=10, mode=mode)
                elapsed = (time.perf_counter() - start) * 1000
                assert all(h.owner == person for h in hits)
                if n >= 20:  # the first queries warm the caches
                    samples[name].append(elapsed)
                    returned[name] += len(hits)
        for mode in modes:
            out[mode] = {
                "p50_ms": round(median(samples[mode]), 3),
                "p95_ms": round(pct(samples[mode], 95), 3),
                "p99_ms": round(pct(samples[mode], 99), 3),
                "mean_hits": round(returned[mode] / QUERIES, 2),
            }
        await plain.stop()
        await service.stop()
        out["items_of_person"] = await store.read(
            lambda c: c.execute(
                "SELECT count(*) FROM memory_chunks WHERE owner = ?", (person,)
            ).fetchone()[0]
        )
    return out


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


def run(quick: bool = False, dim: int = 256) -> dict[str, Any]:
    """Build each database once, time the searches, print a table, return the figures."""
    sizes = [10_000] if quick else [10_000, 100_000]
    embedder = RandomUnitEmbedder(dim)
    results: dict[str, Any] = {"id": "P6", "owners": OWNERS, "dim": dim, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="decapod-p6-") as tmp, _quiet_memory_log():
        for size in sizes:
            path = Path(tmp) / f"memory-{size}.db"
            start = time.perf_counter()
            asyncio.run(_build(path, size, embedder, seed=size))
            build_s = time.perf_counter() - start
            figures = asyncio.run(_measure(path, embedder, seed=size))
            figures["build_s"] = round(build_s, 2)
            figures["db_mb"] = round(
                sum(p.stat().st_size for p in Path(tmp).glob(path.name + "*")) / 1e6, 1
            )
            figures["target_p95_ms"] = TARGETS_MS[size]
            figures["ok"] = figures["hybrid"]["p95_ms"] <= TARGETS_MS[size]
            results["sizes"][str(size)] = figures
    _print(results)
    return results


def _print(results: dict[str, Any]) -> None:
    print(f"P6 memory search: one person among {results['owners']}, dim {results['dim']}")
    print(
        f"{'items':>8} {'mode':>22} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'hits':>5}  target"
    )
    for size, fig in results["sizes"].items():
        for mode in ("hybrid", "keyword", "vector", "hybrid, no last stage"):
            row = fig[mode]
            verdict = f"p95 <= {fig['target_p95_ms']:g} ms {'ok' if fig['ok'] else 'MISSED'}"
            target = verdict if mode == "hybrid" else ""
            print(
                f"{size:>8} {mode:>22} {row['p50_ms']:>8.2f} {row['p95_ms']:>8.2f} "
                f"{row['p99_ms']:>8.2f} {row['mean_hits']:>5.1f}  {target}"
            )
        print(
            f"{'':>8} built in {fig['build_s']} s, {fig['db_mb']} MB, "
            f"{fig['items_of_person']} items for the person searched"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k items only")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = run(args.quick, args.dim)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
