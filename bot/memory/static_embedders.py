"""Static models read by Decapod itself from files of installed packages: potion-base-8M,
shipped inside Decapod's own package (the default), and WordLlama, inside its own. Neither
is loaded at selection: `check()` finds its files, and the first text to embed loads it,
so an idle gateway does not hold it in memory."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bot.memory.embedders import EmbedderError, load_once


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
        # `_table` last: `load_once` reads it, outside its lock, as "all of it is loaded",
        # so another thread's first embed must not see it before the tokenizer
        self._table = table

    def _encode(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        load_once(self, "_table")
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
