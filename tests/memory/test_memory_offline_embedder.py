"""The default embedder: potion-base-8M from inside Decapod's own package, with no network,
read to model2vec's own vectors, loaded on first use rather than at start, replacing an
index built with WordLlama (still selectable, from its package); the sentence-transformers
rename; and what `decapod doctor` says about it."""

from __future__ import annotations

import math
import socket
import sys
import tomllib
import types
import warnings
from pathlib import Path
from typing import Any

import pytest

import bot.memory
from bot.doctor import check_memory
from bot.memory.config import (
    MemoryConfig,
    PotionEmbedderConfig,
    SentenceTransformersEmbedderConfig,
    WordLlamaEmbedderConfig,
)
from bot.memory.embedder_chain import EmbedderChain, build_embedders
from bot.memory.local_embedders import SentenceTransformersEmbedder
from bot.memory.service import MemoryService
from bot.memory.static_embedders import PotionEmbedder, WordLlamaEmbedder
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


POTION_DIR = Path(bot.memory.__file__).parent / "data" / "potion-base-8M"
TEXTS = [
    "I highly recommend this book",
    "any suggestion for a novel?",
    "my dog is sick",
    "Maria: we booked flights to Lisbon 🦀 for the summer!",  # the crab is an unknown token
]


def test_the_default_embedder_is_the_bundled_potion_model() -> None:
    assert MemoryConfig().embedders[0] == PotionEmbedderConfig(type="potion")
    # a config naming WordLlama still reads, and still gets it
    named = MemoryConfig.model_validate({"embedders": [{"type": "wordllama"}]})
    assert named.embedders == [WordLlamaEmbedderConfig(type="wordllama")]


def test_the_wheel_ships_every_file_of_the_bundled_model() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    shipped = set(pyproject["tool"]["setuptools"]["package-data"]["bot.memory"])
    files = {f"data/potion-base-8M/{p.name}" for p in POTION_DIR.iterdir()}
    assert {"model.safetensors", "tokenizer.json", "LICENSE"} <= {
        p.name for p in POTION_DIR.iterdir()
    }
    assert files <= shipped
    assert "Copyright (c) MinishLab" in (POTION_DIR / "LICENSE").read_text()


async def test_default_embedder_ships_with_the_package_and_needs_no_network(
    no_network: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (embedder,) = build_embedders(MemoryConfig().embedders, tmp_path)
    assert isinstance(embedder, PotionEmbedder)
    vectors = await embedder.embed(TEXTS)
    assert embedder.dim == 256 and all(len(v) == 256 for v in vectors)
    assert math.isclose(math.sqrt(_cos(vectors[0], vectors[0])), 1.0, rel_tol=1e-4)
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2]) + 0.2
    # the same vectors as model2vec's own reading of the folder
    from model2vec import StaticModel

    theirs = StaticModel.from_pretrained(POTION_DIR, normalize=True).encode(TEXTS)
    for ours, reference in zip(vectors, theirs, strict=True):
        assert _cos(ours, [float(x) for x in reference]) > 0.999


async def test_packaged_model_loads_on_first_use_not_at_start(tmp_path: Path) -> None:
    embedder = PotionEmbedder()
    async with Store(tmp_path / "decapod.db") as store:
        service = MemoryService(
            store, MemoryConfig(), tmp_path, embedders=[embedder], redact=REDACT
        )
        await service.start(watch=False)
        await service.wait_ready()
        status = service.status()
        assert (status.mode, status.embedder, status.dim) == (
            "hybrid",
            "potion:potion-base-8M",
            256,
        )
        assert embedder._table is None  # an idle gateway holds no model
        item = await service.save("alice", "I bought tickets to Toronto for the summer")
        assert embedder._table is not None
        hits = await service.search("alice", "holiday in Canada", mode="vector")
        assert hits[0].item_id == item
        await service.stop()


async def test_an_index_built_with_wordllama_is_rebuilt_with_potion_at_start(
    tmp_path: Path,
) -> None:
    async def rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await store.read(lambda c: c.execute(sql).fetchall())]

    wordllama = MemoryConfig.model_validate({"embedders": [{"type": "wordllama"}]})
    async with Store(tmp_path / "decapod.db") as store:
        before = MemoryService(store, wordllama, tmp_path, redact=REDACT)
        await before.start(watch=False)
        await before.wait_ready()
        await before.save("alice", "my puppy sleeps a lot")
        await before.save("alice", "alice drinks chai")
        await before.stop()
        assert await rows(store, "SELECT model, dim FROM memory_embedding") == [
            ("wordllama:l2_supercat_256", 256)
        ]

        after = MemoryService(store, MemoryConfig(), tmp_path, redact=REDACT)
        await after.start(watch=False)
        await after.wait_ready()
        try:
            await after.backfill()
            assert await rows(store, "SELECT model, dim FROM memory_embedding") == [
                ("potion:potion-base-8M", 256)
            ]
            unembedded = "SELECT count(*) FROM memory_chunks WHERE embedded = 0"
            assert await rows(store, unembedded) == [(0,)]
            hits = await after.search("alice", "my dog", mode="vector")
            assert hits[0].text == "my puppy sleeps a lot"
        finally:
            await after.stop()


@pytest.mark.parametrize(
    ("missing", "embedder", "said"),
    [
        # the default's files ship in this package; the libraries reading them in the extra
        (
            "tokenizers",
            PotionEmbedder,
            "potion-base-8M needs tokenizers: pip install decapod[memory]",
        ),
        ("wordllama", WordLlamaEmbedder, "wordllama is not installed"),
    ],
)
async def test_without_what_it_needs_memory_is_keyword_only_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
    missing: str,
    embedder: type[PotionEmbedder | WordLlamaEmbedder],
    said: str,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name)
    )
    chain = EmbedderChain([embedder()])
    assert await chain.select() is None
    status = chain.status()
    assert status.mode == "keyword-only"
    assert said in status.failures[0]


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
        "hybrid, embedder potion:potion-base-8M (256 dims), class words on (WordNet 3.0)"
    )


@pytest.mark.parametrize(
    ("embedder", "texts"),
    # potion drops its unknown token, as model2vec does: a text of unknown tokens is empty
    [(PotionEmbedder, ["", "🦀"]), (WordLlamaEmbedder, [""])],
)
async def test_a_text_without_tokens_embeds_to_no_direction(
    embedder: type[PotionEmbedder | WordLlamaEmbedder], texts: list[str]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero on the way
        vectors = await embedder().embed(texts)
    assert vectors == [[0.0] * 256] * len(texts)
