"""Embedders: what they share (the protocol, their error, a local model's one load) and
the OpenAI-compatible server's. The models read on this machine are in
bot/memory/static_embedders.py (potion-base-8M, shipped inside Decapod's package, the
default, and WordLlama, inside its own) and bot/memory/local_embedders.py (a model2vec or
sentence-transformers model from a folder, and `decapod models pull`); bot/memory/
embedder_chain.py builds them from the configuration and chooses among them in order,
with fallback to keyword-only search.

Heavy libraries (numpy, tokenizers, model2vec, sentence-transformers) are imported when a
local model is loaded, never when these modules are imported.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from typing import Any, Protocol

from bot.memory.config import OpenAIEmbedderConfig
from bot.proxy_env import ProxyLookup, check_proxy_env

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
        self._proxies = ProxyLookup()

    async def embed(self, texts: list[str]) -> list[list[float]]:
        import aiohttp

        if self._session is None or self._session.closed:
            # not trust_env, which looks the proxy up in two thread hops per request (every
            # memory save and search): `_proxies` looks it up once
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._cfg.timeout), trust_env=False
            )
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self._cfg.api_key_env) if self._cfg.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        out: list[list[float]] = []
        step = self._cfg.batch_size
        for start in range(0, len(texts), step):
            body = {"model": self._cfg.model, "input": texts[start : start + step]}
            proxy = await self._proxies.for_url(self._url)
            try:
                # no redirect: it would keep the first address's proxy; a 30x is an error
                async with self._session.post(
                    self._url, json=body, headers=headers, proxy=proxy, allow_redirects=False
                ) as resp:
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


def load_once(embedder: Any, loaded_attr: str) -> None:
    if getattr(embedder, loaded_attr) is None:
        with _LOADING:
            if getattr(embedder, loaded_attr) is None:
                embedder.load()


def is_zero(vector: list[float]) -> bool:
    """Texts made only of words a static model does not know embed to zero, which has no
    direction: such a vector is neither stored nor searched with."""
    # hypot walks the list in C (~1 us for 256 dims; a Python sum of squares took ~13 us,
    # on the event loop of every turn that recalls or saves)
    return math.hypot(*vector) < 1e-6
