"""kill -9 while indexing leaves a consistent database, and indexing carries on after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bot.memory.service import MemoryService
from bot.store import Store, sqlite
from tests.deps import REDACT
from tests.memory.conftest import memory_config

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import asyncio, sys
from pathlib import Path
from bot.memory.config import MemoryConfig, Model2VecEmbedderConfig
from bot.memory.service import MemoryService
from bot.store import Store
from bot.security.redact import default_redactor

async def main(db, home, model):
    cfg = MemoryConfig(embedders=[Model2VecEmbedderConfig(type="model2vec", path=model)],
                       chunk_words=40, chunk_overlap=5)
    async with Store(db) as store:
        service = MemoryService(store, cfg, Path(home), redact=default_redactor().redact)
        await service.start(watch=False)
        await service.wait_ready()
        folder = Path(home) / "knowledge"
        i = 0
        while True:
            await service.save(f"p{i % 5}", f"note {i} " + "alpha bravo puppy " * 60)
            (folder / f"doc{i % 3}.md").write_text(f"version {i} " + "tea berlin " * 200)
            await service.watcher.sync()
            i += 1
            print(i, flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


def _check(db: Path) -> None:
    conn = sqlite.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.execute("INSERT INTO memory_fts(memory_fts) VALUES ('integrity-check')")
        orphans = conn.execute(
            "SELECT count(*) FROM memory_chunks c LEFT JOIN memory_items i ON i.id = c.item_id"
            " WHERE i.id IS NULL"
        ).fetchone()[0]
        assert orphans == 0
    finally:
        conn.close()


async def test_kill_during_indexing(tmp_path: Path, tiny_model: Path) -> None:
    db, home = tmp_path / "db.sqlite", tmp_path / "home"
    (home / "knowledge").mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), str(home), str(tiny_model)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 30
        progress = 0
        while progress < 15:
            line = child.stdout.readline()
            assert line and time.monotonic() < deadline, "the indexing child stopped early"
            progress = int(line)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    _check(db)

    async with Store(db) as store:
        service = MemoryService(store, memory_config(tiny_model), home, redact=REDACT)
        await service.start(watch=False)
        await service.wait_ready()
        try:
            await service.backfill()
            pending = await store.read(
                lambda c: c.execute(
                    "SELECT count(*) FROM memory_chunks WHERE embedded = 0"
                ).fetchone()[0]
            )
            assert pending == 0
            item = await service.save("p1", "after the crash: matcha")
            assert (await service.search("p1", "matcha"))[0].item_id == item
            assert await service.search("p2", "tea")  # the knowledge folder is still there
        finally:
            await service.stop()
    _check(db)
