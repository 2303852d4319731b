"""Embedders: the tiny model2vec model through the real loader, the OpenAI-compatible
client against a fake server, and the chain's fallback when the server errors or hangs."""

from __future__ import annotations

import math
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.memory.config import (
    MemoryConfig,
    Model2VecEmbedderConfig,
    OpenAIEmbedderConfig,
    SentenceTransformersEmbedderConfig,
)
from bot.memory.embedder_chain import EmbedderChain, build_embedders
from bot.memory.embedders import EmbedderError, OpenAIEmbedder
from bot.memory.local_embedders import Model2VecEmbedder, pull_model
from bot.memory.service import MemoryService
from bot.store import Store
from tests.deps import REDACT
from tests.fakes.forward_proxy import environment_proxy, thread_hops
from tests.memory.conftest import FakeEmbeddingServer, memory_config


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


async def test_tiny_model2vec_round_trip(tiny_model: Path) -> None:
    embedder = Model2VecEmbedder(tiny_model)
    vectors = await embedder.embed(["my puppy", "the hound", "green tea", "zzz unknown"])
    assert embedder.dim == 16 and embedder.name == "model2vec:tiny"
    assert all(len(v) == 16 for v in vectors)
    assert math.isclose(math.sqrt(sum(x * x for x in vectors[0])), 1.0, rel_tol=1e-5)
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2])
    assert not any(vectors[3])  # no known word: no direction
    assert os.environ["HF_HUB_OFFLINE"] == "1"


async def test_missing_model_directory_fails_without_network(tmp_path: Path) -> None:
    embedder = Model2VecEmbedder(tmp_path / "minishlab" / "potion-base-8M")
    with pytest.raises(EmbedderError, match="does not exist"):
        await embedder.embed(["hello"])


async def test_openai_embedder_against_fake_server(embed_server: FakeEmbeddingServer) -> None:
    cfg = OpenAIEmbedderConfig(
        type="openai",
        base_url=embed_server.url,
        model="fake-embed",
        api_key_env=None,
        batch_size=2,
    )
    embedder = OpenAIEmbedder(cfg)
    try:
        vectors = await embedder.embed(["a b", "c", "d e f"])
        assert len(vectors) == 3 and embedder.dim == 12 and embed_server.calls == 2
        embed_server.mode = "error"
        with pytest.raises(EmbedderError, match="HTTP 500"):
            await embedder.embed(["x"])
    finally:
        await embedder.close()


@pytest_asyncio.fixture
async def remote(embed_server: FakeEmbeddingServer) -> AsyncIterator[OpenAIEmbedder]:
    """An embedder of the fake server, closed after the test."""
    cfg = OpenAIEmbedderConfig(type="openai", base_url=embed_server.url, model="fake-embed")
    embedder = OpenAIEmbedder(cfg)
    try:
        yield embedder
    finally:
        await embedder.close()


async def test_openai_embedder_goes_through_the_proxy_from_the_environment(
    embed_server: FakeEmbeddingServer, remote: OpenAIEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with environment_proxy(monkeypatch) as proxy:
        assert len(await remote.embed(["through the proxy"])) == 1
    assert proxy.targets == [embed_server.url.rstrip("/") + "/embeddings"]


async def test_remote_embeddings_look_the_proxy_up_once_not_at_every_request(
    embed_server: FakeEmbeddingServer, remote: OpenAIEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every memory save and search embeds: aiohttp's trust_env looked the proxy and ~/.netrc
    up in two worker-thread round trips per request."""
    async with environment_proxy(monkeypatch) as proxy:
        with thread_hops(monkeypatch) as hops:
            for n in range(4):
                assert len(await remote.embed([f"note {n}"])) == 1
    assert proxy.targets == [embed_server.url.rstrip("/") + "/embeddings"] * 4
    assert len(hops) == 1, hops  # the one lookup


async def test_remote_embeddings_go_through_a_proxy_that_asks_for_credentials(
    embed_server: FakeEmbeddingServer, remote: OpenAIEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy's login in HTTP_PROXY reaches the proxy, with no deprecation warning (which
    the tests turn into an error) from aiohttp's `proxy_auth=`."""
    async with environment_proxy(monkeypatch, credentials=("ops", "s3cr:et")) as proxy:
        assert len(await remote.embed(["signed in"])) == 1
    assert proxy.targets == [embed_server.url.rstrip("/") + "/embeddings"] and not proxy.refused


async def test_a_host_that_no_proxy_names_is_reached_directly(
    embed_server: FakeEmbeddingServer, remote: OpenAIEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with environment_proxy(monkeypatch) as proxy:
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        assert len(await remote.embed(["direct"])) == 1
    assert proxy.targets == [] and embed_server.calls == 1


async def test_a_redirect_is_an_error_not_followed_around_the_proxy(
    embed_server: FakeEmbeddingServer, remote: OpenAIEmbedder
) -> None:
    """A redirect followed would keep the first address's proxy; the endpoint is the
    operator's setting, and an answer elsewhere means a wrong one."""
    embed_server.mode = "redirect"
    with pytest.raises(EmbedderError, match="HTTP 307"):
        await remote.embed(["x"])
    assert embed_server.calls == 1


def _chain(server: FakeEmbeddingServer, model: Path, timeout: float = 0.3) -> EmbedderChain:
    entries = [
        OpenAIEmbedderConfig(
            type="openai",
            base_url=server.url,
            model="fake-embed",
            api_key_env=None,
            timeout=timeout,
        ),
        SentenceTransformersEmbedderConfig(type="sentence_transformers", path=str(model)),
        Model2VecEmbedderConfig(type="model2vec", path=str(model)),
    ]
    return EmbedderChain(build_embedders(entries, Path("/nonexistent-home")))


@pytest.mark.parametrize("mode", ["error", "hang"])
async def test_chain_falls_back_to_local_model(
    embed_server: FakeEmbeddingServer, tiny_model: Path, mode: str
) -> None:
    embed_server.mode = mode
    chain = _chain(embed_server, tiny_model)
    start = time.monotonic()
    try:
        active = await chain.select()
    finally:
        await chain.close()
    assert active is not None and active.name == "model2vec:tiny"
    assert time.monotonic() - start < 5
    status = chain.status()
    assert status.mode == "hybrid" and status.embedder == "model2vec:tiny"
    assert any("openai:fake-embed" in f for f in status.failures)
    assert any("sentence" in f for f in status.failures)  # not installed, or no such model


async def test_chain_prefers_the_server_when_it_answers(
    embed_server: FakeEmbeddingServer, tiny_model: Path
) -> None:
    chain = _chain(embed_server, tiny_model)
    try:
        active = await chain.select()
    finally:
        await chain.close()
    assert active is not None and active.name == "openai:fake-embed" and active.dim == 12


async def test_no_embedder_means_keyword_only(caplog: pytest.LogCaptureFixture) -> None:
    chain = EmbedderChain(
        build_embedders(
            [Model2VecEmbedderConfig(type="model2vec", path="missing")], Path("/nonexistent")
        )
    )
    assert await chain.select() is None
    assert await chain.select() is None
    assert chain.status().mode == "keyword-only"
    assert sum("keyword-only" in r.getMessage() for r in caplog.records) == 1  # logged once
    assert await chain.embed(["x"]) is None
    caplog.clear()
    empty = EmbedderChain([])
    assert await empty.select() is None and await empty.select() is None
    assert [r.getMessage() for r in caplog.records] == [
        "memory search is keyword-only: no embedder configured"
    ]


async def test_runtime_failure_searches_keyword_only_without_waiting(
    embed_server: FakeEmbeddingServer, tiny_model: Path, tmp_path: Path
) -> None:
    cfg = MemoryConfig(
        embedders=[
            OpenAIEmbedderConfig(
                type="openai",
                base_url=embed_server.url,
                model="fake-embed",
                api_key_env=None,
                timeout=0.3,
            )
        ]
    )
    async with Store(tmp_path / "db.sqlite") as store:
        service = MemoryService(store, cfg, tmp_path, redact=REDACT)
        await service.start(watch=False)
        await service.wait_ready()
        try:
            assert service.status().embedder == "openai:fake-embed"
            await service.save("alice", "alice drinks oolong every morning")
            embed_server.mode = "hang"
            start = time.monotonic()
            hits = await service.search("alice", "oolong morning")
            assert [h.text for h in hits] == ["alice drinks oolong every morning"]
            assert time.monotonic() - start < 5  # the server hangs for good; loose bound
            calls = embed_server.calls
            await service.save("alice", "saved while the server hangs")
            hits = await service.search("alice", "server hangs")
            assert embed_server.calls == calls and hits  # the breaker is open: no second wait
            assert service.status().reason is not None
            embed_server.mode = "ok"
            service.chain._open_until = 0.0  # the cool-down has passed
            assert await service.backfill() == 1
        finally:
            await service.stop()


async def test_embedders_are_configured_relative_to_home(tmp_path: Path, tiny_model: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny").symlink_to(tiny_model)
    [embedder] = build_embedders(
        [Model2VecEmbedderConfig(type="model2vec", path="models/tiny")], tmp_path
    )
    assert len((await embedder.embed(["dog"]))[0]) == 16


def test_pull_model_from_a_local_folder(tmp_path: Path, tiny_model: Path) -> None:
    dest = tmp_path / "models" / "tiny"
    assert pull_model(str(tiny_model), dest) == dest
    assert {p.name for p in dest.iterdir()} >= {
        "tokenizer.json",
        "model.safetensors",
        "config.json",
    }
    broken = tmp_path / "broken"
    broken.mkdir()
    with pytest.raises(EmbedderError):
        pull_model(str(broken), tmp_path / "models" / "broken")
    assert not (tmp_path / "models" / "broken").exists()
    assert not (tmp_path / "models" / "broken.partial").exists()


def test_memory_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        MemoryConfig.model_validate({"embedders": [{"type": "model2vec", "path": "x", "p": 1}]})
    with pytest.raises(ValueError, match="chunk_overlap"):
        MemoryConfig(chunk_words=50, chunk_overlap=50)
    assert memory_config(None).embedders == []


def test_importing_memory_loads_no_model_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys, bot.memory, bot.memory.cli\n"
        "heavy = {'numpy', 'model2vec', 'sentence_transformers', 'torch', 'tokenizers'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
