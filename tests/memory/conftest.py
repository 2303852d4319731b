"""Fixtures for memory tests: a tiny model2vec model written to disk, a started store and
memory service, and a fake OpenAI-compatible embeddings server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from bot.memory.config import MemoryConfig, Model2VecEmbedderConfig
from bot.memory.service import MemoryService
from bot.store import Store
from tests.deps import REDACT

# Words in one group get nearby vectors, so the tiny model knows they mean about the same.
SYNONYMS = [
    ["dog", "puppy", "canine", "hound"],
    ["tea", "chai", "oolong", "matcha"],
    ["berlin", "germany", "munich", "hamburg"],
    ["guitar", "ukulele", "banjo", "mandolin"],
    ["doctor", "physician", "clinic", "hospital"],
]
_FILLER = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu red green "
    "blue yellow purple orange black white monday tuesday friday sunday likes loves hates "
    "visits plays drinks lives works my the a is in with and"
)
VOCAB = [w for group in SYNONYMS for w in group] + _FILLER.split()


def build_tiny_model(
    dest: Path, words: Iterable[str] = VOCAB, dim: int = 16, seed: int = 7
) -> Path:
    """Write the three files model2vec's loader reads: tokenizer.json (a WordLevel vocabulary
    built with `tokenizers`), model.safetensors (the embedding table) and config.json."""
    import numpy as np
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    dest.mkdir(parents=True, exist_ok=True)
    vocab = {"[UNK]": 0, "[PAD]": 1}
    for word in words:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(dest / "tokenizer.json"))

    rng = np.random.default_rng(seed)
    table = rng.normal(size=(len(vocab), dim)).astype(np.float32)
    table[0] = 0.0  # unknown words carry no meaning
    for group in SYNONYMS:
        centre = rng.normal(size=dim).astype(np.float32) * 3
        for word in group:
            if word in vocab:
                table[vocab[word]] = centre + rng.normal(size=dim).astype(np.float32) * 0.2
    save_file({"embeddings": table}, str(dest / "model.safetensors"))
    (dest / "config.json").write_text(
        json.dumps({"model_type": "model2vec", "normalize": True, "hidden_dim": dim})
    )
    return dest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def memory_config(model: Path | None, **overrides: Any) -> MemoryConfig:
    embedders = [Model2VecEmbedderConfig(type="model2vec", path=str(model))] if model else []
    return MemoryConfig(embedders=embedders, recency_boost=0.0, **overrides)


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store(tmp_path / "decapod.db") as s:
        yield s


@pytest_asyncio.fixture
async def memory(store: Store, tiny_model: Path, tmp_path: Path) -> AsyncIterator[MemoryService]:
    service = MemoryService(store, memory_config(tiny_model), tmp_path / "home", redact=REDACT)
    await service.start(watch=False)
    await service.wait_ready()
    yield service
    await service.stop()


class FakeEmbeddingServer:
    """/v1/embeddings on 127.0.0.1: `mode` is "ok", "error" (HTTP 500), "hang" or
    "redirect" (a 307 to the same address, which answers once it is followed)."""

    def __init__(self, dim: int = 12) -> None:
        self.dim = dim
        self.mode = "ok"
        self.calls = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._release = asyncio.Event()

    async def _embeddings(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.json()
        if self.mode == "error":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if self.mode == "hang":
            await self._release.wait()
        if self.mode == "redirect" and "followed" not in request.query:
            raise web.HTTPTemporaryRedirect(request.rel_url.with_query(followed="1"))
        data = [
            {"object": "embedding", "index": i, "embedding": _hash_vector(text, self.dim)}
            for i, text in enumerate(body["input"])
        ]
        return web.json_response({"object": "list", "data": data, "model": body["model"]})

    async def start(self) -> FakeEmbeddingServer:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()


def _hash_vector(text: str, dim: int) -> list[float]:
    """A deterministic bag-of-words vector: texts sharing words point the same way."""
    import hashlib

    vec = [0.0] * dim
    for word in text.lower().split():
        digest = hashlib.sha256(word.encode()).digest()
        vec[digest[0] % dim] += 1.0 if digest[1] % 2 else -1.0
    return vec if any(vec) else [1.0] + [0.0] * (dim - 1)


@pytest_asyncio.fixture
async def embed_server() -> AsyncIterator[FakeEmbeddingServer]:
    server = await FakeEmbeddingServer().start()
    yield server
    await server.stop()
