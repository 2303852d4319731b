"""The default embedder: WordLlama's weights from inside its installed package, with no
network, loaded on first use rather than at start; the sentence-transformers rename; and
what `decapod doctor` says about it."""

from __future__ import annotations

import math
import socket
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import pytest

from bot.doctor import check_memory
from bot.memory.config import MemoryConfig, SentenceTransformersEmbedderConfig
from bot.memory.embedder_chain import EmbedderChain
from bot.memory.embedders import (
    SentenceTransformersEmbedder,
    WordLlamaEmbedder,
    build_embedders,
)
from bot.memory.service import MemoryService
from bot.store import Store
from tests.deps import REDACT


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network is off in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


async def test_default_embedder_ships_with_its_package_and_needs_no_network(
    no_network: None, tmp_path: Path
) -> None:
    (embedder,) = build_embedders(MemoryConfig().embedders, tmp_path)
    assert isinstance(embedder, WordLlamaEmbedder)
    vectors = await embedder.embed(
        ["I highly recommend this book", "any suggestion for a novel?", "my dog is sick"]
    )
    assert embedder.dim == 256 and all(len(v) == 256 for v in vectors)
    assert math.isclose(math.sqrt(_cos(vectors[0], vectors[0])), 1.0, rel_tol=1e-4)
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2]) + 0.2


async def test_packaged_model_loads_on_first_use_not_at_start(tmp_path: Path) -> None:
    embedder = WordLlamaEmbedder()
    async with Store(tmp_path / "decapod.db") as store:
        service = MemoryService(
            store, MemoryConfig(), tmp_path, embedders=[embedder], redact=REDACT
        )
        await service.start(watch=False)
        await service.wait_ready()
        status = service.status()
        assert (status.mode, status.embedder, status.dim) == (
            "hybrid",
            "wordllama:l2_supercat_256",
            256,
        )
        assert embedder._table is None  # an idle gateway holds no model
        item = await service.save("alice", "I bought tickets to Toronto for the summer")
        assert embedder._table is not None
        hits = await service.search("alice", "holiday in Canada", mode="vector")
        assert hits[0].item_id == item
        await service.stop()


async def test_without_the_package_memory_is_keyword_only_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wordllama" else real(name)
    )
    chain = EmbedderChain([WordLlamaEmbedder()])
    assert await chain.select() is None
    status = chain.status()
    assert status.mode == "keyword-only"
    assert "wordllama is not installed" in status.failures[0]


class _ModelV6:
    """The two dimension methods as sentence-transformers 5.4+ has them."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        self.path = path

    def get_embedding_dimension(self) -> int:
        return 8

    def get_sentence_embedding_dimension(self) -> int:
        warnings.warn(
            "The `get_sentence_embedding_dimension` method has been renamed to "
            "`get_embedding_dimension`.",
            FutureWarning,
            stacklevel=2,
        )
        return 8


class _ModelV3:
    def __init__(self, path: str, **kwargs: Any) -> None:
        self.path = path

    def get_sentence_embedding_dimension(self) -> int:
        return 12


@pytest.mark.parametrize(("model", "dim"), [(_ModelV6, 8), (_ModelV3, 12)])
def test_sentence_transformers_dimension_without_deprecation_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: type, dim: int
) -> None:
    module = types.ModuleType("sentence_transformers")
    module.SentenceTransformer = model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sentence_transformers", module)
    (embedder,) = build_embedders(
        [SentenceTransformersEmbedderConfig(type="sentence_transformers", path="st")], tmp_path
    )
    (tmp_path / "st").mkdir()
    assert isinstance(embedder, SentenceTransformersEmbedder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedder.load()
    assert embedder.dim == dim


async def test_doctor_names_the_active_embedder(make_config: Any) -> None:
    config = make_config(sandbox={"backend": "none"})
    ((what, ok, detail),) = await check_memory(config)
    assert (what, ok) == ("memory", True)
    assert detail == (
        "hybrid, embedder wordllama:l2_supercat_256 (256 dims), class words on (WordNet 3.0)"
    )


async def test_a_text_without_tokens_embeds_to_no_direction() -> None:
    embedder = WordLlamaEmbedder()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero on the way
        (vector,) = await embedder.embed([""])
    assert vector == [0.0] * 256
