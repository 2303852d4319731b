"""The knowledge folder: Markdown files indexed as memory shared by everyone.

A cheap poll of names, sizes and mtimes every `interval_s` finds changes without a new
dependency; a file is (re)indexed once it has stopped changing for `debounce_s`, so an
editor's save in several writes is indexed once. Unchanged content (same SHA-256) is
never re-embedded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot.store.memory import MemoryRepo

log = logging.getLogger("decapod.memory")

SUFFIXES = (".md", ".markdown")
MAX_FILE_BYTES = 2_000_000
IndexFile = Callable[[str, str, str], Awaitable[None]]  # (relative path, text, sha256)
Snapshot = dict[str, tuple[int, int]]  # relative path -> (mtime_ns, size)
#: a file the store refused is tried again after this, then after twice the last wait
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0


def _inside(real_root: str, real: str) -> bool:
    """Whether `real` is under `real_root` (both with their symlinks resolved)."""
    return os.path.commonpath([real_root, real]) == real_root


def scan(root: Path) -> tuple[str, Snapshot]:
    """Markdown files under `root`, skipping hidden files and folders (.git, editor swaps),
    and `root` resolved, for the reads of them to check against. Only regular files count,
    and a symlink only when it leads to one inside `root`: what is indexed is shared with
    everyone, and a FIFO would block the read forever."""
    out: Snapshot = {}
    real_root = os.path.realpath(root)
    for folder, dirs, files in os.walk(root):  # into no linked folder
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or not name.lower().endswith(SUFFIXES):
                continue
            full = os.path.join(folder, name)
            try:
                st = os.stat(full)
            except OSError:  # removed between listing and stat
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            # so only a file that is itself a link can lead out: only those are resolved
            if os.path.islink(full) and not _inside(real_root, os.path.realpath(full)):
                continue
            out[Path(full).relative_to(root).as_posix()] = (st.st_mtime_ns, st.st_size)
    return real_root, out


def _read(real_root: str, path: Path) -> tuple[str, str] | None:
    """The text and SHA-256 of a file `scan` listed; None when it is gone, or was swapped
    since for something `scan` leaves out (a FIFO, a link out of `root`, a file over the
    limit)."""
    real = os.path.realpath(path)
    if not _inside(real_root, real):
        return None
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_FILE_BYTES:
        return None
    return data.decode("utf-8", errors="replace"), hashlib.sha256(data).hexdigest()


class KnowledgeWatcher:
    def __init__(
        self,
        root: Path,
        repo: MemoryRepo,
        index: IndexFile,
        *,
        interval_s: float = 0.5,
        debounce_s: float = 0.5,
    ) -> None:
        self.root = root
        self.repo = repo
        self.index = index
        self.interval_s = interval_s
        self.debounce_s = debounce_s
        self._seen: Snapshot = {}
        self._real_root = ""  # `root` resolved, by the last scan
        self._known: dict[str, str] = {}  # relative path -> sha256 of what is indexed
        # relative path -> when it last changed (for a refused file: so that it is due
        # when its retry is)
        self._pending: dict[str, float] = {}
        self.retry_s = RETRY_FIRST_S
        self._failing: dict[str, float] = {}  # path whose last refresh failed -> its backoff

    async def sync(self) -> tuple[int, int]:
        """Bring the index in line with the folder (files changed while stopped, too).
        Returns (files indexed, files removed)."""
        self._known = await self.repo.knowledge_files()
        self._real_root, self._seen = await asyncio.to_thread(scan, self.root)
        indexed = removed = 0
        for path in sorted(self._seen):
            indexed += await self._try_refresh(path)
        for path in sorted(set(self._known) - set(self._seen)):
            removed += await self._try_refresh(path)
        return indexed, removed

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._next_wait())
            try:
                await self.poll()
            except Exception:
                log.exception("knowledge folder scan failed")

    def _next_wait(self) -> float:
        if not self._pending:
            return self.interval_s
        due = min(self._pending.values()) + self.debounce_s - time.monotonic()
        return max(0.01, min(self.interval_s, due))

    async def poll(self) -> int:
        """One scan: note what changed, and refresh what has been quiet for the debounce.
        Returns the number of files indexed or removed."""
        now = time.monotonic()
        self._real_root, snapshot = await asyncio.to_thread(scan, self.root)
        for path in set(snapshot) | set(self._seen):
            if snapshot.get(path) != self._seen.get(path):
                self._pending[path] = now
        self._seen = snapshot
        done = 0
        for path, changed in list(self._pending.items()):
            if now - changed >= self.debounce_s:
                del self._pending[path]
                done += await self._try_refresh(path)
        return done

    async def _try_refresh(self, path: str) -> int:
        """`_refresh`; when it fails (the store refusing the write: a full disk, say) the
        file stays pending, to be tried again after a wait that doubles with each failure
        (each try reads, hashes and embeds it all again), and the others go on."""
        try:
            done = await self._refresh(path)
        except Exception:
            wait = self._failing.get(path)
            if wait is None:
                wait = self.retry_s
                log.warning("knowledge file %s not indexed, will retry", path, exc_info=True)
            else:
                wait = min(wait * 2, RETRY_MAX_S)
            self._failing[path] = wait
            self._pending[path] = time.monotonic() + wait - self.debounce_s
            return 0
        self._failing.pop(path, None)
        return done

    async def _refresh(self, path: str) -> int:
        full = self.root / path
        content = None
        if path in self._seen:
            if self._seen[path][1] > MAX_FILE_BYTES:
                log.warning("knowledge file %s is over %d bytes; not indexed", path, MAX_FILE_BYTES)
            else:
                content = await asyncio.to_thread(_read, self._real_root, full)
        if content is None:
            if path not in self._known:
                return 0
            await self.repo.remove_knowledge(path)
            del self._known[path]
            log.info("knowledge file removed from memory: %s", path)
            return 1
        text, sha = content
        if self._known.get(path) == sha:
            return 0
        await self.index(path, text, sha)
        self._known[path] = sha
        log.info("knowledge file indexed: %s", path)
        return 1
