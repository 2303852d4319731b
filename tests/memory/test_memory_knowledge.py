"""The knowledge folder: indexed at start, re-indexed when a file changes (debounced),
removed when a file is deleted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.memory.knowledge import scan
from bot.memory.service import MemoryService
from bot.store import Store
from bot.store.memory import SHARED
from tests.deps import REDACT
from tests.memory.conftest import memory_config


@pytest_asyncio.fixture
async def watched(
    store: Store, tiny_model: Path, tmp_path: Path
) -> AsyncIterator[tuple[MemoryService, Path]]:
    home = tmp_path / "home"
    folder = home / "knowledge"
    (folder / "team").mkdir(parents=True)
    (folder / "team" / "tea.md").write_text("# Tea\n\nThe office keeps oolong and matcha.\n")
    (folder / ".hidden.md").write_text("hidden oolong")
    (folder / "notes.txt").write_text("not markdown oolong")
    cfg = memory_config(tiny_model, watch_interval_ms=50, watch_debounce_ms=150)
    service = MemoryService(store, cfg, home, redact=REDACT)
    await service.start()
    await service.wait_ready()
    yield service, folder
    await service.stop()


async def _knowledge(service: MemoryService) -> dict[str, str]:
    return {r.source: r.text for r in await service.repo.items(SHARED)}


async def _until(check, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_start_indexes_markdown_only(watched: tuple[MemoryService, Path]) -> None:
    service, _ = watched
    assert await _knowledge(service) == {
        "team/tea.md": "# Tea\n\nThe office keeps oolong and matcha.\n"
    }
    hits = await service.search("alice", "oolong")
    assert [h.source for h in hits] == ["team/tea.md"] and hits[0].kind == "knowledge"
    assert await service.search("alice", "oolong", include_shared=False) == []


async def test_watcher_reindexes_and_removes(watched: tuple[MemoryService, Path]) -> None:
    service, folder = watched
    (folder / "berlin.md").write_text("Trips: berlin in may.")
    await _until(lambda: _has(service, "berlin.md"))
    (folder / "team" / "tea.md").write_text("The office switched to chai.")
    await _until(lambda: _text_is(service, "team/tea.md", "The office switched to chai."))
    assert [h.source for h in await service.search("bob", "chai", mode="keyword")] == [
        "team/tea.md"
    ]
    assert (await service.search("bob", "oolong", mode="vector"))[0].source == "team/tea.md"
    assert await service.search("bob", "matcha", mode="keyword") == []
    (folder / "berlin.md").unlink()
    await _until(lambda: _gone(service, "berlin.md"))
    assert await service.search("bob", "berlin", mode="keyword") == []


async def _has(service: MemoryService, path: str) -> bool:
    return path in await _knowledge(service)


async def _gone(service: MemoryService, path: str) -> bool:
    return path not in await _knowledge(service)


async def _text_is(service: MemoryService, path: str, text: str) -> bool:
    return (await _knowledge(service)).get(path) == text


async def test_debounce_waits_for_writes_to_settle(
    store: Store, tiny_model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "knowledge"
    folder.mkdir()
    service = MemoryService(
        store, memory_config(tiny_model, watch_debounce_ms=300), tmp_path, redact=REDACT
    )
    watcher = service.watcher
    await watcher.sync()
    path = folder / "draft.md"
    path.write_text("first")
    assert await watcher.poll() == 0  # seen, not yet quiet
    await asyncio.sleep(0.1)
    path.write_text("second, longer")
    assert await watcher.poll() == 0  # changed again: the wait starts over
    await asyncio.sleep(0.35)
    assert await watcher.poll() == 1
    assert await _knowledge(service) == {"draft.md": "second, longer"}
    os.utime(path)  # touched, same content: not re-embedded
    await asyncio.sleep(0.35)
    assert await watcher.poll() == 0 and await watcher.poll() == 0


async def test_changes_while_stopped_are_caught_up(
    store: Store, tiny_model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "knowledge"
    folder.mkdir()
    (folder / "a.md").write_text("alpha doc")
    (folder / "b.md").write_text("bravo doc")
    service = MemoryService(store, memory_config(tiny_model), tmp_path, redact=REDACT)
    assert await service.watcher.sync() == (2, 0)
    (folder / "a.md").unlink()
    (folder / "b.md").write_text("bravo doc, edited")
    (folder / "c.md").write_text("charlie doc")
    again = MemoryService(store, memory_config(tiny_model), tmp_path, redact=REDACT)
    assert await again.watcher.sync() == (2, 1)
    assert await _knowledge(again) == {"b.md": "bravo doc, edited", "c.md": "charlie doc"}


async def test_a_link_out_of_the_folder_is_not_followed(
    store: Store, tiny_model: Path, tmp_path: Path
) -> None:
    """Knowledge is shared with everyone: a symlink (to a file or a folder) leading out of the
    folder must not bring what it points at into it. One that stays inside is read."""
    secret = tmp_path / "private" / "diary.md"
    secret.parent.mkdir()
    secret.write_text("the vault code is 4711")
    folder = tmp_path / "knowledge"
    folder.mkdir()
    (folder / "tea.md").write_text("oolong")
    (folder / "leak.md").symlink_to(secret)
    (folder / "private").symlink_to(secret.parent, target_is_directory=True)
    (folder / "tea-again.md").symlink_to(folder / "tea.md")
    # not even listed: what changes out there is no reason to poll or read it
    assert set(scan(folder)[1]) == {"tea.md", "tea-again.md"}
    service = MemoryService(store, memory_config(tiny_model), tmp_path, redact=REDACT)
    await service.watcher.sync()
    assert await _knowledge(service) == {"tea.md": "oolong", "tea-again.md": "oolong"}
    # a file swapped for a link out after it was seen is not read either
    (folder / "tea.md").unlink()
    (folder / "tea.md").symlink_to(secret)
    service.watcher.debounce_s = 0
    await service.watcher.poll()
    assert "4711" not in str(await _knowledge(service))


async def test_a_fifo_named_like_markdown_does_not_hang_the_sync(
    store: Store, tiny_model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "knowledge"
    folder.mkdir()
    os.mkfifo(folder / "pipe.md")
    (folder / "tea.md").write_text("oolong")
    service = MemoryService(store, memory_config(tiny_model), tmp_path, redact=REDACT)
    try:
        assert await asyncio.wait_for(service.watcher.sync(), 10) == (1, 0)
    finally:
        with contextlib.suppress(OSError):  # a read blocked on the FIFO ends with its writer
            os.close(os.open(folder / "pipe.md", os.O_WRONLY | os.O_NONBLOCK))
    assert await _knowledge(service) == {"tea.md": "oolong"}


async def test_a_file_the_store_refused_is_indexed_once_it_takes_writes_again(
    store: Store, tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk fills while the folder is indexed: nothing of it is lost for good. Every file
    is tried, and each one refused is tried again, without being changed, once there is
    room; not at every poll meanwhile (each try reads and embeds it all), and the failure
    is logged once, with its traceback."""
    folder = tmp_path / "knowledge"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.md").write_text(f"{name} doc " + "filler words " * 40_000)
    service = MemoryService(
        store, memory_config(tiny_model, watch_debounce_ms=0), tmp_path, redact=REDACT
    )
    watcher = service.watcher
    # long enough that the polls below, on a busy machine, all come before the retry is due
    watcher.retry_s = 5.0
    tried: list[str] = []
    index = watcher.index

    async def counted(path: str, text: str, sha: str) -> None:
        tried.append(path)
        await index(path, text, sha)

    watcher.index = counted
    pages = await store.read(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await store.write(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))  # full
    with caplog.at_level(logging.WARNING, "decapod.memory"):
        assert await watcher.sync() == (0, 0)
        for _ in range(5):
            assert await watcher.poll() == 0  # their retry is not due yet
    assert tried == ["a.md", "b.md"]
    told = [r for r in caplog.records if "not indexed" in r.getMessage()]
    assert len(told) == 2 and all(r.exc_info for r in told)
    assert await _knowledge(service) == {}
    await store.write(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
    done = 0

    async def both() -> bool:
        nonlocal done
        done += await watcher.poll()
        return done == 2

    await _until(both)
    assert set(await _knowledge(service)) == {"a.md", "b.md"}
    assert tried == ["a.md", "b.md", "a.md", "b.md"]
