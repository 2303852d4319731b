"""The embedder chain: the first embedder that answers is used, behind a breaker, and
memory search falls back to keyword-only while none does."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from bot.memory.config import (
    EmbedderConfig,
    Model2VecEmbedderConfig,
    OpenAIEmbedderConfig,
    PotionEmbedderConfig,
    SentenceTransformersEmbedderConfig,
    WordLlamaEmbedderConfig,
)
from bot.memory.embedders import Embedder, EmbedderError, OpenAIEmbedder
from bot.memory.local_embedders import Model2VecEmbedder, SentenceTransformersEmbedder
from bot.memory.static_embedders import PotionEmbedder, WordLlamaEmbedder

log = logging.getLogger("decapod.memory")


@dataclass(frozen=True, slots=True)
class EmbedderStatus:
    mode: str  # "hybrid" | "keyword-only"
    embedder: str | None
    dim: int
    #: why the mode is keyword-only, or what the last failure was
    reason: str | None
    #: embedders tried at selection and why each one failed
    failures: tuple[str, ...] = ()


class EmbedderChain:
    """Picks the first embedder that answers, and guards it with a breaker.

    Vectors from different models cannot share one index, so a failure at run time does
    not switch models: searches run keyword-only until the active one answers again
    (after `cooldown` seconds), and the chain is walked again only when none is active."""

    def __init__(self, embedders: list[Embedder], *, cooldown: float = 30.0) -> None:
        self.embedders = embedders
        self.active: Embedder | None = None
        self.cooldown = cooldown
        self.reason: str | None = "no embedder selected yet"
        self._failures: tuple[str, ...] = ()
        self._logged: tuple[str, ...] | None = None
        self._open_until = 0.0

    async def select(self) -> Embedder | None:
        failures: list[str] = []
        for embedder in self.embedders:
            try:
                await self._probe(embedder)
            except EmbedderError as exc:
                failures.append(str(exc))
                continue
            self.active, self.reason, self._open_until = embedder, None, 0.0
            self._failures = tuple(failures)
            return embedder
        self.active = None
        self._failures = tuple(failures)
        self.reason = "no embedder answered" if self.embedders else "no embedder configured"
        if self._logged != self._failures:  # once, not at every retry
            self._logged = self._failures
            log.warning("memory search is keyword-only: %s", "; ".join(failures) or self.reason)
        return None

    async def _probe(self, embedder: Embedder) -> None:
        check = getattr(embedder, "check", None)
        if check is not None:  # a packaged model of known size: find it, load it later
            check()
            return
        probe = await self._bounded(embedder, ["memory probe"])
        if not probe or not probe[0]:
            raise EmbedderError(f"{embedder.name}: empty probe vector")
        embedder.dim = len(probe[0])

    @property
    def usable(self) -> bool:
        return self.active is not None and time.monotonic() >= self._open_until

    async def embed(self, texts: list[str]) -> list[list[float]] | None:
        """Vectors from the active embedder, or None (keyword-only) while it is failing."""
        if not texts or self.active is None or not self.usable:
            return None
        try:
            vectors = await self._bounded(self.active, texts)
        except EmbedderError as exc:
            if self.reason is None:
                log.warning("embedder %s failed, searching keyword-only: %s", self.active.name, exc)
            self.reason = str(exc)
            self._open_until = time.monotonic() + self.cooldown
            return None
        self.reason = None
        return vectors

    async def _bounded(self, embedder: Embedder, texts: list[str]) -> list[list[float]]:
        # Local models run in a thread; an unexpected error there must not escape as a crash.
        try:
            vectors = await embedder.embed(texts)
        except EmbedderError:
            raise
        except Exception as exc:
            raise EmbedderError(f"{embedder.name}: {type(exc).__name__}: {exc}") from exc
        if len(vectors) != len(texts):
            raise EmbedderError(
                f"{embedder.name}: returned {len(vectors)} vectors for {len(texts)}"
            )
        return vectors

    def status(self) -> EmbedderStatus:
        if self.active is None:
            return EmbedderStatus("keyword-only", None, 0, self.reason, self._failures)
        return EmbedderStatus(
            "hybrid", self.active.name, self.active.dim, self.reason, self._failures
        )

    async def close(self) -> None:
        for embedder in self.embedders:
            close = getattr(embedder, "close", None)
            if close is not None:
                await close()


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
