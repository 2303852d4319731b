"""Embedders: potion-base-8M's static embeddings shipped inside Decapod's package (the
default), WordLlama's shipped inside its own, an OpenAI-compatible server, a local model2vec
model, an optional local sentence-transformers model, chosen in order with fallback to
keyword-only search.

Nothing is downloaded at run time: the static models' weights and tokenizers are files of
installed packages; other local embedders load from a directory that must exist, with the
Hugging Face hub switched offline. `pull_model` fetches a model only when the operator asks
for it (`decapod models pull NAME`).

Heavy libraries (numpy, tokenizers, model2vec, sentence-transformers) are imported when a
local model is loaded, never when this module is imported. A packaged model is not even
loaded at selection: `check()` finds its files, and the first text to embed loads it, so an
idle gateway does not hold it in memory.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bot.memory.config import (
    EmbedderConfig,
    Model2VecEmbedderConfig,
    OpenAIEmbedderConfig,
    PotionEmbedderConfig,
    SentenceTransformersEmbedderConfig,
    WordLlamaEmbedderConfig,
)
from bot.proxy_env import check_proxy_env

if TYPE_CHECKING:
    from bot.progress import ProgressSink

log = logging.getLogger("decapod.memory")


class EmbedderError(Exception):
    """An embedder could not produce vectors (server error, timeout, missing model)."""


class Embedder(Protocol):
    #: identifies the vector space: vectors from two names never share an index
    name: str
    #: 0 until the first successful call when the server decides it
    dim: int

    async def embed(self, texts: list[str]) -> list[list[float]]: ...


class OpenAIEmbedder:
    """POST {base_url}/embeddings with aiohttp; every request is bounded by `timeout`."""

    def __init__(self, cfg: OpenAIEmbedderConfig) -> None:
        self.name = f"openai:{cfg.model}"
        self.dim = 0
        self._cfg = cfg
        self._url = cfg.base_url.rstrip("/") + "/embeddings"
        check_proxy_env()
        self._session: Any = None

    async def embed(self, texts: list[str]) -> list[list[float]]:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._cfg.timeout), trust_env=True
            )
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self._cfg.api_key_env) if self._cfg.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        out: list[list[float]] = []
        step = self._cfg.batch_size
        for start in range(0, len(texts), step):
            body = {"model": self._cfg.model, "input": texts[start : start + step]}
            try:
                async with self._session.post(self._url, json=body, headers=headers) as resp:
                    if resp.status != 200:
                        raise EmbedderError(f"{self.name}: HTTP {resp.status}")
                    payload = await resp.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise EmbedderError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
            out.extend(self._parse(payload, len(body["input"])))
        return out

    def _parse(self, payload: Any, expected: int) -> list[list[float]]:
        try:
            rows = sorted(payload["data"], key=lambda r: r["index"])
            vectors = [[float(x) for x in r["embedding"]] for r in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbedderError(f"{self.name}: malformed response") from exc
        if len(vectors) != expected or len({len(v) for v in vectors}) > 1:
            raise EmbedderError(f"{self.name}: wrong number or size of vectors")
        if vectors:
            if self.dim and len(vectors[0]) != self.dim:
                raise EmbedderError(f"{self.name}: dimension changed to {len(vectors[0])}")
            self.dim = len(vectors[0])
        return vectors

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


#: A local model loads in the first embedding's worker thread. A burst of first recalls runs
#: in several threads at once, and each loaded its own copy of the table (+51 MB apiece for
#: WordLlama): one loads, the others wait for it.
_LOADING = threading.Lock()


def _load_once(embedder: Any, loaded_attr: str) -> None:
    if getattr(embedder, loaded_attr) is None:
        with _LOADING:
            if getattr(embedder, loaded_attr) is None:
                embedder.load()


def _local_model_dir(path: Path) -> Path:
    if not path.is_dir():
        raise EmbedderError(f"model directory {path} does not exist (see `decapod models pull`)")
    # Libraries resolve names they cannot find locally against the hub; never let them.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    return path


class Model2VecEmbedder:
    """A model2vec static model: a token embedding table averaged on the CPU, no torch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"model2vec:{path.name}"
        self.dim = 0
        self._model: Any = None

    def load(self) -> None:
        # the folder first: with no model installed, model2vec (and numpy) are never imported
        model_dir = _local_model_dir(self.path)
        try:
            from model2vec import StaticModel
        except ImportError as exc:
            raise EmbedderError("model2vec is not installed: pip install decapod[memory]") from exc
        try:
            self._model = StaticModel.from_pretrained(model_dir, normalize=True)
        except EmbedderError:
            raise
        except Exception as exc:
            raise EmbedderError(f"cannot load model2vec model from {self.path}: {exc}") from exc
        self.dim = int(self._model.dim)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        _load_once(self, "_model")
        vectors = self._model.encode(texts, use_multiprocessing=False, show_progress_bar=False)
        return [[float(x) for x in row] for row in vectors]

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._encode, texts)


class SentenceTransformersEmbedder:
    """A sentence-transformers model from a local directory, on the CPU."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = f"sentence_transformers:{path.name}"
        self.dim = 0
        self._model: Any = None

    def load(self) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbedderError("sentence-transformers is not installed") from exc
        try:
            self._model = SentenceTransformer(
                str(_local_model_dir(self.path)), device="cpu", local_files_only=True
            )
        except EmbedderError:
            raise
        except Exception as exc:
            raise EmbedderError(f"cannot load {self.path}: {exc}") from exc
        # sentence-transformers 5.4 renamed the method and warns on the old name
        dimension = getattr(self._model, "get_embedding_dimension", None)
        if dimension is None:
            dimension = self._model.get_sentence_embedding_dimension
        self.dim = int(dimension() or 0)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        _load_once(self, "_model")
        vectors = self._model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
        return [[float(x) for x in row] for row in vectors]

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._encode, texts)


class _StaticTableEmbedder:
    """A static model read by Decapod itself: a text's vector is the mean of its tokens'
    rows in a float16 table, normalised. Only safetensors, tokenizers and numpy are used
    (no model framework, nothing downloaded); the table stays float16. Loaded by the first
    `embed`, in its worker thread."""

    name: str
    dim: int
    #: what to install when the files are missing, for the error message
    _label: str
    #: the table's name in the safetensors file
    _table_key: str
    #: a token dropped before averaging (model2vec drops its unknown token); None keeps all
    _unknown_token: str | None = None

    def __init__(self) -> None:
        self._table: Any = None
        self._tokenizer: Any = None
        self._unknown_id: int | None = None

    def _files(self) -> tuple[Path, Path]:
        """The weights and the tokenizer; raises EmbedderError when they are not there."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise EmbedderError unless the model's files are there; loads nothing."""
        self._files()

    def load(self) -> None:
        weights, tokenizer_file = self._files()
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer

            table = load_file(str(weights))[self._table_key]
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:
            raise EmbedderError(f"cannot load {self._label}: {type(exc).__name__}: {exc}") from exc
        if table.ndim != 2 or table.shape[1] != self.dim:
            raise EmbedderError(
                f"{self._label}'s table has shape {table.shape}, not (n, {self.dim})"
            )
        tokenizer.no_padding()
        tokenizer.no_truncation()
        if self._unknown_token is not None:
            self._unknown_id = tokenizer.token_to_id(self._unknown_token)
        self._tokenizer = tokenizer
        # `_table` last: `_load_once` reads it, outside its lock, as "all of it is loaded",
        # so another thread's first embed must not see it before the tokenizer
        self._table = table

    def _encode(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        _load_once(self, "_table")
        out: list[list[float]] = []
        for encoding in self._tokenizer.encode_batch(texts, add_special_tokens=False):
            ids = np.asarray(encoding.ids, dtype=np.int64)
            if self._unknown_id is not None:
                ids = ids[ids != self._unknown_id]
            ids = np.clip(ids, 0, len(self._table) - 1)
            if not len(ids):  # no token, no direction: a zero vector, which is never stored
                out.append([0.0] * self.dim)
                continue
            mean = self._table[ids].astype(np.float32).mean(axis=0)
            norm = float(np.linalg.norm(mean))
            out.append([float(x) / norm for x in mean] if norm > 0 else [0.0] * self.dim)
        return out

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._encode, texts)


#: shipped in this package (bot/memory/data/potion-base-8M, MIT, see its README and LICENSE)
POTION_DIR = Path(__file__).parent / "data" / "potion-base-8M"
#: what the bundled model's reader imports; all come with `decapod[memory]`
_STATIC_READER_NEEDS = ("numpy", "safetensors", "tokenizers")


class PotionEmbedder(_StaticTableEmbedder):
    """potion-base-8M (Minish Lab; model2vec static embeddings, 256 dims), the default: its
    table and tokenizer ship inside Decapod's own package. model2vec reads the same folder
    to the same vectors for texts under 512 tokens (it averages token rows without the
    unknown token, and normalises; it cuts a text at 512 tokens by default, this reader does
    not, which is harmless as the index and the queries share it)."""

    name = "potion:potion-base-8M"
    dim = 256
    _label = "potion-base-8M"
    _table_key = "embeddings"
    _unknown_token = "[UNK]"

    def _files(self) -> tuple[Path, Path]:
        import importlib.util

        # the files are always there; the libraries that read them come with an extra
        missing = [n for n in _STATIC_READER_NEEDS if importlib.util.find_spec(n) is None]
        if missing:
            raise EmbedderError(
                f"{self._label} needs {', '.join(missing)}: pip install decapod[memory]"
            )
        weights, tokenizer = POTION_DIR / "model.safetensors", POTION_DIR / "tokenizer.json"
        for path in (weights, tokenizer):
            if not path.is_file():
                raise EmbedderError(f"{self._label}: {path} is missing from the package")
        return weights, tokenizer


_WORDLLAMA_WEIGHTS = ("weights", "l2_supercat_256.safetensors")
_WORDLLAMA_TOKENIZER = ("tokenizers", "l2_supercat_tokenizer_config.json")


class WordLlamaEmbedder(_StaticTableEmbedder):
    """WordLlama (l2_supercat, 256 dims), from the weights and tokenizer inside the
    installed `wordllama` package. The package itself is never imported (its import
    configures the root logger, and its loader downloads the tokenizer it fails to find)."""

    name = "wordllama:l2_supercat_256"
    dim = 256
    _label = "wordllama"
    _table_key = "embedding.weight"

    def _files(self) -> tuple[Path, Path]:
        import importlib.util

        spec = importlib.util.find_spec("wordllama")  # finds the folder, imports nothing
        if spec is None or not spec.submodule_search_locations:
            raise EmbedderError("wordllama is not installed: pip install decapod[memory]")
        root = Path(next(iter(spec.submodule_search_locations)))
        weights = root.joinpath(*_WORDLLAMA_WEIGHTS)
        tokenizer = root.joinpath(*_WORDLLAMA_TOKENIZER)
        for path in (weights, tokenizer):
            if not path.is_file():
                raise EmbedderError(f"wordllama's package has no {path.name}")
        return weights, tokenizer


def build_embedders(entries: list[EmbedderConfig], home: Path) -> list[Embedder]:
    out: list[Embedder] = []
    for entry in entries:
        if isinstance(entry, PotionEmbedderConfig):
            out.append(PotionEmbedder())
        elif isinstance(entry, WordLlamaEmbedderConfig):
            out.append(WordLlamaEmbedder())
        elif isinstance(entry, OpenAIEmbedderConfig):
            out.append(OpenAIEmbedder(entry))
        elif isinstance(entry, Model2VecEmbedderConfig):
            out.append(Model2VecEmbedder(home / entry.path))
        elif isinstance(entry, SentenceTransformersEmbedderConfig):
            out.append(SentenceTransformersEmbedder(home / entry.path))
    return out


def is_zero(vector: list[float]) -> bool:
    """Texts made only of words a static model does not know embed to zero, which has no
    direction: such a vector is neither stored nor searched with."""
    # hypot walks the list in C (~1 us for 256 dims; a Python sum of squares took ~13 us,
    # on the event loop of every turn that recalls or saves)
    return math.hypot(*vector) < 1e-6


def pull_model(name: str, dest: Path, progress: ProgressSink | None = None) -> Path:
    """Install a model2vec model into `dest`: from a local directory (copied, its bytes
    reported to `progress`), or from the Hugging Face hub by repository name (e.g.
    minishlab/potion-base-8M; the hub's own bars show on a terminal). Run only on request.
    The copy is loaded before it replaces `dest`, so a failed or interrupted pull leaves
    nothing half-done."""
    source = Path(name).expanduser()
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        if source.is_dir():
            _copy_tree(source, staging, progress)
        else:
            os.environ.pop("HF_HUB_OFFLINE", None)
            from model2vec import StaticModel

            StaticModel.from_pretrained(name).save_pretrained(staging)
        Model2VecEmbedder(staging).load()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return dest


_COPY_BLOCK = 1024 * 1024


def _copy_tree(source: Path, target: Path, progress: ProgressSink | None) -> None:
    files = sorted(p for p in source.rglob("*") if p.is_file())
    if progress is not None:
        progress.begin(sum(p.stat().st_size for p in files))
    target.mkdir(parents=True)
    for path in files:
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as src, out.open("wb") as dst:
            while block := src.read(_COPY_BLOCK):
                dst.write(block)
                if progress is not None:
                    progress.advance(len(block))
        shutil.copystat(path, out)
