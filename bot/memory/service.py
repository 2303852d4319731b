"""MemoryService: what the agent, the tools, the commands and the CLI call.

Memory belongs to a person (the canonical person id shared by linked identities), never to
a bot or a chat. Every read is scoped to one person plus, when asked, the shared knowledge.

Where an item was saved scopes it too: what a person says in a private place (a DM, the
console, the web UI) is kept under their own id and recalled only in private places; what
they say in a group is kept under `<person>@<group>` (`place_owner` in
bot/store/memory_items.py) and recalled only in that group. Every query already filters on
the owner in SQL (FTS owner tag, vector partition), so a group's recall cannot reach a DM's
items, and needs no extra lookup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.memory.class_words import CLASS_WORDS, ClassWords
from bot.memory.config import MemoryConfig
from bot.memory.embedder_chain import EmbedderChain, build_embedders
from bot.memory.embedders import Embedder
from bot.memory.forgetting import forget_owned
from bot.memory.index import NoEmbedder, VectorIndex
from bot.memory.knowledge import KnowledgeWatcher
from bot.memory.links import LINK_ALPHABET, LINK_TTL_S, LinkCodes, MemoryRequestError
from bot.memory.rerank import NEIGHBOUR_WINDOW_S
from bot.memory.retrieval import Retrieval, SearchMode
from bot.memory.search import MemoryHit, fit_budget, merge_phrasings
from bot.memory.text import (
    indexed_context,
    indexed_text,
    speaker_of,
    without_speaker,
)
from bot.progress import ProgressSink
from bot.providers.base import ChatMessage, Provider
from bot.store import Store
from bot.store.memory import SHARED, ItemRow, NewChunk, NewItem, place_owner
from bot.store.pg_memory import memory_repo
from bot.tasks import cancel_and_wait

log = logging.getLogger("decapod.memory")
__all__ = [
    "LINK_ALPHABET",
    "LINK_TTL_S",
    "MemoryRequestError",
    "MemoryService",
    "MemoryStatus",
    "NoEmbedder",
    "SearchMode",
]

KINDS = ("fact", "preference", "note", "session_summary", "knowledge")
MAX_ITEM_CHARS = 20_000
_RESELECT_S = 60.0
_PRUNE_S = 3600.0
_EARLIEST = 0.0
_DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class MemoryStatus:
    enabled: bool
    mode: str  # "hybrid" | "keyword-only" | "disabled"
    embedder: str | None
    dim: int
    vector_extension: bool
    reason: str | None
    failures: tuple[str, ...] = ()


class MemoryService:
    def __init__(
        self,
        store: Store,
        config: MemoryConfig,
        home: Path,
        *,
        redact: Callable[[str], str],
        embedders: list[Embedder] | None = None,
        class_words: ClassWords | None = None,
    ) -> None:
        if not callable(redact):
            # what a person or the model saves must not keep a secret at rest
            raise TypeError("MemoryService needs a redactor: redact must be a function str -> str")
        self.config = config
        self.repo = memory_repo(store)
        self.chain = EmbedderChain(
            embedders if embedders is not None else build_embedders(config.embedders, home)
        )
        self.watcher = KnowledgeWatcher(
            home / config.knowledge_dir,
            self.repo,
            self._index_knowledge,
            interval_s=config.watch_interval_ms / 1000,
            debounce_s=config.watch_debounce_ms / 1000,
        )
        self._redact = redact
        self.session_export_dir = home / config.session_export_dir
        self.index = VectorIndex(self.repo.vectors, self.chain)
        self.links = LinkCodes(self.repo)
        self.retrieval = Retrieval(self.repo, config, self.index, self.chain)
        #: the class words of saved turns; the shared table unless a test gives another
        self.class_words = class_words if class_words is not None else CLASS_WORDS
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()

    def use(self, config: MemoryConfig) -> None:
        """Search and recall by `config` from now on, on the index as it is (which compares
        search settings without indexing again). What `config` says of indexing and
        embedders does not apply, not even to what is indexed later: the embedder chain is
        chosen once, when the service is made; a restart takes a new one."""
        self.config = config
        self.retrieval.use(config)

    # lifecycle -------------------------------------------------------------------------------
    async def start(self, *, watch: bool = True) -> None:
        """Return at once; embedder selection, index checks and the first knowledge sync run
        in the background (searches are keyword-only until then). `wait_ready()` waits."""
        if not self.config.enabled:
            self._ready.set()
            return
        if self.index.vec_error is not None:
            log.warning("memory search is keyword-only: %s", self.index.vec_error)
        self._tasks.append(asyncio.create_task(self._run(watch), name="memory"))

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        self._tasks.clear()
        await self.chain.close()

    async def _run(self, watch: bool) -> None:
        try:
            await self.repo.prune_expired(time.time())
            await self.repo.vectors.prune_cache()
            if self.index.vec_error is None:
                await self.repo.vectors.purge_orphan_vectors()
                await self.index.select()
            await self.watcher.sync()
        except Exception:
            log.exception("memory start-up step failed; continuing keyword-only")
        finally:
            self._ready.set()
        self._tasks.append(asyncio.create_task(self.index.backfill_loop(), name="memory-backfill"))
        if watch:
            self._tasks.append(asyncio.create_task(self.watcher.run(), name="memory-knowledge"))
        last_prune = time.monotonic()
        while True:
            await asyncio.sleep(_RESELECT_S)
            try:
                if self.index.vec_error is None and self.chain.active is None:
                    await self.index.select()
                if time.monotonic() - last_prune >= _PRUNE_S:
                    last_prune = time.monotonic()
                    await self.repo.prune_expired(time.time())
                self.index.wake.set()
            except Exception:
                log.exception("memory maintenance failed")

    def status(self) -> MemoryStatus:
        vec_error = self.index.vec_error
        if not self.config.enabled:
            return MemoryStatus(False, "disabled", None, 0, vec_error is None, None)
        if vec_error is not None:
            return MemoryStatus(True, "keyword-only", None, 0, False, vec_error)
        s = self.chain.status()
        return MemoryStatus(True, s.mode, s.embedder, s.dim, True, s.reason, s.failures)

    # the vector index (bot/memory/index.py) ---------------------------------------------------
    async def _chunks(self, text: str, context: str = "") -> tuple[list[NewChunk], str | None]:
        return await self.index.chunks(
            text, self.config.chunk_words, self.config.chunk_overlap, context
        )

    async def backfill(self) -> int:
        """Embed chunks stored without a vector; returns how many were done."""
        return await self.index.backfill()

    async def reindex(self, *, resume: bool = False, progress: ProgressSink | None = None) -> int:
        """Rebuild the vector index (or, with `resume`, finish one); see VectorIndex.reindex."""
        return await self.index.reindex(resume=resume, progress=progress)

    # saving and searching ---------------------------------------------------------------------
    def _owner(self, person_id: str, place: str = "") -> str:
        if not person_id or person_id == SHARED:
            raise MemoryRequestError("memory needs a known person")
        return place_owner(person_id, place)

    async def every_owner(self, person_id: str) -> list[str]:
        """The person's own owner and those of every group they saved in (what a DM's
        /forget takes): a scan of owners, for commands and the web UI, never for a turn."""
        return await self.repo.owners_of(self._owner(person_id))

    async def save(
        self,
        person_id: str,
        text: str,
        *,
        kind: str = "fact",
        source: str = "",
        expires_at: float | None = None,
        at: float | None = None,
        speaker: str = "",
        context: str = "",
        place: str = "",
    ) -> int:
        """Remember `text` for a person; returns the item id (an existing one for a repeat).

        `at` is when it was said (default: now): relative dates in the text ("yesterday",
        "last Saturday") are resolved against it and written after them. `speaker` is who
        said it, kept in front of the text. `context` is what the text depends on, such as the
        turn it answers ("How was the road trip?"): searched with a lower weight, not shown.
        A turn (a `speaker`, or "Name: " in front) saved without `context` gets the turn
        stored just before it, if said within ten minutes: what a reply answers. `place` is
        the group it was said in ("" for a private place): only there is it recalled."""
        owner = self._owner(person_id, place)
        if kind not in KINDS or kind == "knowledge":
            raise MemoryRequestError(f"unknown kind {kind!r}")
        said = time.time() if at is None else at
        if not _EARLIEST <= said <= time.time() + _DAY_S:
            raise MemoryRequestError("`at` must be a time between 1970 and tomorrow")
        text = self._redact(text).strip()[:MAX_ITEM_CHARS]
        if not text:
            raise MemoryRequestError("nothing to remember")
        speaker = self._redact(speaker).strip()
        context = self._redact(context)
        if not context.strip() and (speaker or speaker_of(text)):
            context = await self._turn_before(owner, said)
        classes = await self.class_words.find(text) if self.config.class_words else ""
        text = indexed_text(text, speaker=speaker, said=said)
        chunks, model = await self._chunks(text, indexed_context(context, said, classes))
        item_id, _ = await self.repo.add(
            NewItem(owner, kind, text, chunks, source, model, expires_at, at)
        )
        self.index.stored_without_vectors(model)
        return item_id

    def class_words_status(self) -> str:
        """Whether saved items are searched by their nouns' classes, for `decapod doctor`."""
        return self.class_words.status(self.config.class_words)

    async def _turn_before(self, owner: str, said: float) -> str:
        """What the turn stored last for `owner` says (its speaker left out, or a question
        naming them would match every reply made to them), if said near `said`; else ""."""
        row = await self.repo.last_turn(owner, time.time())
        if row is None or speaker_of(row.text) is None:
            return ""
        return without_speaker(row.text) if abs(said - row.created_at) <= NEIGHBOUR_WINDOW_S else ""

    async def search(
        self,
        person_id: str,
        query: str,
        *,
        limit: int = 10,
        include_shared: bool = True,
        mode: SearchMode = "hybrid",
        place: str = "",
        everywhere: bool = False,
    ) -> list[MemoryHit]:
        """The person's best matching items saved in `place` ("": private places; with
        `everywhere`, every place, for the web UI) and shared knowledge, best first
        (bot/memory/retrieval.py)."""
        owners = await self._owners(person_id, place, everywhere) + (
            [SHARED] if include_shared else []
        )
        return await self.retrieval.search(owners, query, limit, mode)

    async def search_phrasings(
        self, person_id: str, phrasings: list[str], *, limit: int = 10, place: str = ""
    ) -> list[MemoryHit]:
        """Search several phrasings of one question and merge them: an item's score is its
        best score plus a share of the others, so one found by several phrasings ranks
        higher, and one strong match is never buried by weak ones."""
        queries = list(dict.fromkeys(q for q in phrasings if q.strip()))
        if len(queries) <= 1:
            first = queries[0] if queries else ""
            return await self.search(person_id, first, limit=limit, place=place)
        results = [await self.search(person_id, q, limit=limit * 2, place=place) for q in queries]
        return merge_phrasings(results, limit)

    async def recall(
        self,
        person_id: str,
        query: str,
        *,
        budget_tokens: int | None = None,
        include_shared: bool = True,
        place: str = "",
    ) -> list[MemoryHit]:
        """Hits for the system prompt: render them with `render_recall`, which then stays
        within `budget_tokens` (default: the configured recall budget). In a group (`place`)
        only what the person saved in that group, never what they said in a DM."""
        budget = self.config.recall_budget_tokens if budget_tokens is None else budget_tokens
        if not self.config.enabled or budget <= 0:
            return []
        hits = await self.search(
            person_id,
            query,
            limit=self.config.recall_limit,
            include_shared=include_shared,
            place=place,
        )
        return fit_budget(hits, budget)

    async def forget(
        self,
        person_id: str,
        *,
        item_ids: list[int] | None = None,
        matching: str | None = None,
        everything: bool = False,
        place: str = "",
        everywhere: bool = False,
    ) -> list[ItemRow]:
        """Delete a person's own items saved in `place` ("": private places; a group's place:
        only that group's) (rows, index entries, vectors); returns what went. `everywhere`
        (/forget in a DM, the web UI, the command line) takes those of every place instead."""
        gone: list[ItemRow] = []
        for owner in await self._owners(person_id, place, everywhere):
            gone += await forget_owned(self.repo, owner, item_ids, matching, everything)
        return gone

    async def count(self, person_id: str) -> int:
        """How many items the person has, wherever saved (what a DM's `/forget all` takes)."""
        return sum([await self.repo.count(o) for o in await self._owners(person_id, "", True)])

    async def _owners(self, person_id: str, place: str, everywhere: bool) -> list[str]:
        """The owners a person's items are kept under: `place`'s ("": the private places), or
        with `everywhere` those of every place."""
        if everywhere and place:
            raise MemoryRequestError("everywhere or in one place, not both")
        if everywhere:
            return await self.every_owner(person_id)
        return [self._owner(person_id, place)]

    # knowledge -------------------------------------------------------------------------------
    async def _index_knowledge(self, path: str, text: str, sha: str) -> None:
        chunks, model = await self._chunks(text)
        await self.repo.replace_knowledge(path, sha, text, chunks, model)
        self.index.stored_without_vectors(model)

    # exports and extraction ----------------------------------------------------------------
    # (their modules are imported with their first use: a start needs neither)
    async def export_people(
        self, dest: Path, person_id: str | None = None, progress: ProgressSink | None = None
    ) -> list[Path]:
        """`decapod memory export`: one Markdown file per person under `dest`."""
        from bot.memory.export import export_people

        return await export_people(self.repo, dest, person_id, progress)

    async def export_session(self, session_id: int, *, redact: Callable[[str], str]) -> Path | None:
        """A finished session as Markdown in the configured folder, pruned by age and count."""
        from bot.memory.export import export_session

        return await export_session(
            self.repo,
            session_id,
            self.session_export_dir,
            redact=redact,
            keep=self.config.session_export_keep,
            max_age_days=self.config.session_export_max_age_days,
        )

    async def extract_before_compaction(
        self, person_id: str, messages: list[ChatMessage], provider: Provider, *, model: str = ""
    ) -> int:
        """Save the durable facts of messages about to be compacted; see bot/memory/extract."""
        from bot.memory.extract import extract_before_compaction

        return await extract_before_compaction(self, person_id, messages, provider, model=model)

    # identity links --------------------------------------------------------------------------
    async def create_link_code(self, person_id: str) -> str:
        return await self.links.create(self._owner(person_id))

    async def redeem_link_code(self, person_id: str, code: str) -> str:
        """Join this person to the one who made `code`; returns the person id both now share."""
        return await self.links.redeem(self._owner(person_id), code)
