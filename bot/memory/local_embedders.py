"""Embedders of a model in a folder of the gateway's home: a model2vec static model or a
sentence-transformers one, loaded with the Hugging Face hub switched offline (nothing is
downloaded at run time), and `pull_model`, which fetches a model only when the operator
asks for it (`decapod models pull NAME`)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.memory.embedders import EmbedderError, load_once

if TYPE_CHECKING:
    from bot.progress import ProgressSink


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
        load_once(self, "_model")
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
        load_once(self, "_model")
        vectors = self._model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
        return [[float(x) for x in row] for row in vectors]

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._encode, texts)


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
