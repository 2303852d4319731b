"""The live skill set: loaded at start, reloaded when the skills folder changes.

The watcher (watchfiles: inotify where the kernel has it, polling where it has not) waits
until the folder has been quiet for `debounce_ms`, then reloads in a thread; only changed
SKILL.md files are parsed again. Each new SkillSet goes to `on_reload`, which swaps it into
the gateway's dependencies: a turn keeps the set it started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.sandbox.base import SANDBOX_PATH
from bot.skills.catalog import SkillSet
from bot.skills.library import SkillLibrary
from bot.skills.skill import Surroundings, host_which
from bot.tasks import cancel_and_wait

log = logging.getLogger("decapod.skills")

#: the longest a change is grouped with later ones before it is reloaded anyway
_MAX_GROUPING_MS = 500
#: a hidden file touched at start until the watcher reports it (the loader skips it)
_PROBE = ".watch-probe"


@dataclass(frozen=True, slots=True)
class SkillsDeps:
    """The skills part of the dependencies: the live runtime (its folders, its reloads),
    and the set current when this Deps was made, which a turn keeps to its end."""

    runtime: SkillRuntime
    current: SkillSet

    @property
    def library(self) -> SkillLibrary:
        return self.runtime.library


class SkillRuntime:
    def __init__(
        self,
        library: SkillLibrary,
        *,
        config: object,
        tool_names: Callable[[], list[str]],
        on_reload: Callable[[SkillSet], None] = lambda _: None,
    ) -> None:
        self.library = library
        self._config = config
        self._tool_names = tool_names
        self._on_reload = on_reload
        self._loader = library.loader()
        self._lock = asyncio.Lock()
        self._changed = asyncio.Condition()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._recheck: asyncio.Task[None] | None = None
        self._recheck_again = False
        self.current = SkillSet()
        #: set once the watcher sees changes (tests and benchmarks wait for it)
        self.watching = asyncio.Event()

    async def start(self, *, watch: bool, watch_after_s: float = 0.0) -> SkillSet:
        """Load the skills; with `watch`, reload them on every edit, watching from
        `watch_after_s` seconds on (an edit made before then is loaded when the watch
        begins)."""
        await asyncio.to_thread(self.library.ensure_dirs)
        await self.reload()
        if watch:
            self._task = asyncio.create_task(self._watch(watch_after_s), name="skills-watcher")
        return self.current

    async def stop(self) -> None:
        self._stop.set()
        await cancel_and_wait(self._task, self._recheck)
        self._task = self._recheck = None

    def tools_changed(self) -> None:
        """Tools came or went after start (an MCP server listed or withdrew its tools): check
        the skills' `tools` requirements again, in the background. Changes that arrive
        during a reload are taken up by one more reload, never one each."""
        if self._stop.is_set():
            return
        self._recheck_again = True
        if self._recheck is None or self._recheck.done():
            self._recheck = asyncio.create_task(self._recheck_tools(), name="skills-tools")

    async def _recheck_tools(self) -> None:
        while self._recheck_again:
            self._recheck_again = False
            await self._reload_logged()

    async def reload(self) -> SkillSet:
        async with self._lock:
            around = Surroundings(
                tools=frozenset(self._tool_names()),
                config=self._config,
                environ=dict(os.environ),
                # skills' programs run in the sandbox, which sees only these folders
                which=host_which(SANDBOX_PATH),
            )
            budget = self.library.config.prompt_budget_bytes
            fresh = await asyncio.to_thread(self._loader.load, around, budget)
            self.current = fresh
            self._on_reload(fresh)
        async with self._changed:
            self._changed.notify_all()
        return fresh

    async def wait_for_generation(self, generation: int) -> SkillSet:
        """Until a set numbered at least `generation` is current (tests, benchmarks)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.current.generation >= generation)
        return self.current

    async def _watch(self, after_s: float) -> None:
        if after_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(after_s):
                    await self._stop.wait()
        from watchfiles import awatch

        debounce = self.library.config.debounce_ms
        root = str(self.library.root)
        while not self._stop.is_set():
            try:
                changes = awatch(
                    root,
                    stop_event=self._stop,
                    debounce=max(_MAX_GROUPING_MS, debounce),
                    step=debounce,
                )
                first = asyncio.ensure_future(anext(changes))
                try:
                    await self._until_watching(first)
                finally:
                    first.cancel()
                # the watch is live now: a change made since the last load is caught here
                await self._reload_logged()
                self.watching.set()
                async for _batch in changes:
                    await self._reload_logged()
            except StopAsyncIteration:
                return  # stopped
            except Exception:
                # the folder vanished, or the kernel refused a watch: look again shortly
                log.exception("watching %s failed; retrying", root)
                self.watching.clear()
                await asyncio.sleep(1.0)
                await asyncio.to_thread(self.library.ensure_dirs)

    async def _until_watching(self, first: asyncio.Future[Any]) -> None:
        """Touch a hidden probe file until the watcher reports a change: then it is live
        (watchfiles does not say when its watch is in place)."""
        probe = self.library.root / _PROBE
        try:
            while not first.done():
                await asyncio.to_thread(_touch_private, probe)
                await asyncio.wait({first}, timeout=0.1)
            first.result()
        finally:
            await asyncio.to_thread(probe.unlink, True)

    async def _reload_logged(self) -> None:
        try:
            fresh = await self.reload()
        except Exception:
            log.exception("reloading the skills failed; the previous set stays in use")
            return
        log.info(
            "skills reloaded: %d available, %d unavailable, %d broken",
            len(fresh.available),
            len(fresh.unavailable),
            len(fresh.broken),
        )


def _touch_private(path: Path) -> None:
    """Change `path` (0600, like everything under the home), so the watcher sees a write."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, b".")
    finally:
        os.close(fd)
