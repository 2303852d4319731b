"""Long commands show progress (a bar with an ETA on a terminal, plain lines elsewhere), and
Ctrl-C leaves a consistent state and says how to resume."""

from __future__ import annotations

import io
import re
import signal
from pathlib import Path

import pytest

from bot.cli import main
from bot.progress import Progress
from bot.store import Store, sqlite
from tests.cli.harness import decapod, start, stop, until, write_config
from tests.deps import REDACT
from tests.fakes.llm import FakeLLM
from tests.memory.conftest import build_tiny_model


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_a_plain_line_every_few_seconds() -> None:
    clock, out = Clock(), io.StringIO()
    with Progress("reindex", unit="chunks", stream=out, every_s=5, clock=clock) as progress:
        progress.begin(100)
        for _ in range(10):
            clock.now += 1
            progress.advance(10)

    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0] == "reindex: 0/100 chunks (0%)"
    assert lines[1] == "reindex: 50/100 chunks (50%), about 5s left"
    assert lines[-1] == "reindex: 100/100 chunks in 10s"
    assert len(lines) == 4  # 0 s, 5 s, 10 s, and the end; not one per step


def test_on_a_terminal_a_bar_with_counts_and_an_eta() -> None:
    clock, out = Clock(), Terminal()
    with Progress("pull", unit="B", stream=out, clock=clock) as progress:
        progress.begin(4 * 1024 * 1024)
        clock.now += 2
        progress.advance(1024 * 1024)

    screen = out.getvalue()
    assert "\rpull [######..................] 1.0 MB/4.0 MB  ETA 6s" in screen
    assert screen.endswith("\rpull: 1.0 MB/4.0 MB in 2s\x1b[K\n")  # the bar's line is ended


async def test_migrate_shows_its_steps(home: Path) -> None:
    write_config(home, "")

    first = await decapod(home, "migrate")
    second = await decapod(home, "migrate")

    assert first.returncode == 0, first
    steps = first.stderr.splitlines()
    assert re.fullmatch(r"migrate: 0/(\d+) migrations \(0%\)", steps[0]), steps
    total = steps[0].split("/")[1].split()[0]
    assert re.fullmatch(rf"migrate: {total}/{total} migrations in \d+s", steps[-1]), steps
    assert first.stdout.startswith("applied: m001_core")
    assert second.stdout == "database is up to date\n" and second.stderr == ""


# memory reindex: Ctrl-C and --resume -----------------------------------------------------------
CHUNKS = 640  # ten batches of 64


async def _seed(db: Path, home: Path) -> None:
    from bot.memory.config import MemoryConfig
    from bot.memory.service import MemoryService

    async with Store(db) as store:
        memory = MemoryService(store, MemoryConfig(embedders=[]), home, redact=REDACT)
        for n in range(CHUNKS):
            await memory.save("person-1", f"the fact called {_word(n)} is kept")


def _word(n: int) -> str:
    """A distinct word per chunk: what is embedded leaves digits out, and equal inputs would
    share one cached vector, so fewer batches would reach the embedder."""
    letters = ""
    while True:
        n, digit = divmod(n, 26)
        letters += chr(ord("a") + digit)
        if n == 0:
            return "zq" + letters


def _embedded(db: Path) -> int:
    conn = sqlite.connect(db)
    try:
        return int(
            conn.execute("SELECT count(*) FROM memory_chunks WHERE embedded = 1").fetchone()[0]
        )
    finally:
        conn.close()


async def test_reindex_stopped_by_ctrl_c_resumes_where_it_stopped(home: Path) -> None:
    if not sqlite.vec_available():
        pytest.skip("sqlite-vec is not installed")
    db = home / "decapod.db"
    async with FakeLLM() as fake:
        fake.embed_delay_s = 0.3
        write_config(
            home,
            "[[memory.embedders]]\n"
            f'type = "openai"\nbase_url = "{fake.base_url}/v1"\nmodel = "fake-embed"\n'
            'api_key_env = "FAKE_LLM_KEY"\n',
        )
        await _seed(db, home)
        reindex = await start(home, "memory", "reindex")
        # the probe, then a few batches: stopped in the middle
        await until(lambda: len(fake.calls(path="/v1/embeddings")) >= 4, 60, "batches")
        stopped = await stop(reindex, signal.SIGINT)
        done_before = _embedded(db)
        fake.requests.clear()
        resumed = await decapod(home, "memory", "reindex", "--resume")
        batches = len(fake.calls(path="/v1/embeddings"))

    assert stopped.returncode == 130, stopped
    said = stopped.stderr.splitlines()[-1]
    assert said.startswith(f"interrupted: {done_before} of {CHUNKS} chunks have their vectors")
    assert "decapod memory reindex --resume" in said
    assert 0 < done_before < CHUNKS
    assert stopped.stderr.startswith(f"reindex: 0/{CHUNKS} chunks (0%)\n")
    assert resumed.returncode == 0, resumed
    assert resumed.stdout.startswith(f"reindexed {CHUNKS - done_before} chunk(s) with ")
    assert _embedded(db) == CHUNKS
    assert batches <= 1 + -(-(CHUNKS - done_before) // 64)  # the probe + only what was left


async def test_reindex_without_an_embedder_says_how_to_get_one(home: Path) -> None:
    # a local model that was never pulled (the default, potion-base-8M, ships in the package)
    config = '[[memory.embedders]]\ntype = "model2vec"\npath = "models/potion-base-32M"\n'
    write_config(home, config)

    done = await decapod(home, "memory", "reindex")

    assert done.returncode == 1
    assert "no embedder answered: no embedder answered" not in done.stdout
    assert "does not exist" in done.stdout  # what was tried, and why it failed
    assert "decapod models pull minishlab/potion-base-32M" in done.stdout
    assert "[[memory.embedders]]" in done.stdout


# export and pull: stopped midway ---------------------------------------------------------------
def _interrupt_after(monkeypatch: pytest.MonkeyPatch, steps: int) -> None:
    """Ctrl-C as the work reports its `steps`-th step."""
    advance = Progress.advance
    seen = {"n": 0}

    def interrupting(self: Progress, n: int = 1) -> None:
        seen["n"] += 1
        if seen["n"] > steps:
            raise KeyboardInterrupt
        advance(self, n)

    monkeypatch.setattr(Progress, "advance", interrupting)


async def _three_people(db: Path, home: Path) -> None:
    from bot.memory.config import MemoryConfig
    from bot.memory.service import MemoryService

    async with Store(db) as store:
        memory = MemoryService(store, MemoryConfig(embedders=[]), home, redact=REDACT)
        for person in ("ann", "bob", "cyd"):
            await memory.save(person, f"{person} likes tea")


def test_export_stopped_midway_leaves_whole_files(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    write_config(home, "[memory]\nembedders = []\n")
    asyncio.run(_three_people(home / "decapod.db", home))
    out = home / "exports"
    _interrupt_after(monkeypatch, 1)

    assert main(["memory", "export", "--out", str(out)]) == 130

    err = capsys.readouterr().err
    assert "interrupted: 1 of 3 people exported, each file whole" in err
    assert "run the same command again" in err
    files = sorted(out.iterdir())
    assert [f.name for f in files] == ["ann.md", "bob.md"]  # the third was never begun
    assert all(f.read_text().startswith("# Memory of ") for f in files)


def test_pull_of_a_local_model_shows_progress_and_ctrl_c_installs_nothing(
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_config(home, "")
    source = build_tiny_model(tmp_path / "tiny")
    monkeypatch.setattr("bot.memory.local_embedders._COPY_BLOCK", 256)

    assert main(["models", "pull", str(source), "--dest", str(tmp_path / "ok")]) == 0
    shown = capsys.readouterr()
    assert shown.err.startswith("pull: 0 B/")
    assert re.search(r"^pull: [\d.]+ KB/[\d.]+ KB in \d+s$", shown.err, re.MULTILINE)
    assert (tmp_path / "ok" / "model.safetensors").exists()

    _interrupt_after(monkeypatch, 3)
    dest = tmp_path / "stopped"
    assert main(["models", "pull", str(source), "--dest", str(dest)]) == 130

    err = capsys.readouterr().err
    assert re.search(r"interrupted: nothing was installed \(\d+ B copied, removed again\)", err)
    assert not dest.exists() and not dest.with_name("stopped.partial").exists()
