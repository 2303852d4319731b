"""What Decapod keeps under its home is private (files 0600, folders 0700) whatever the umask,
and a home made earlier under a permissive umask is repaired at start, once, with a log line."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import load_config
from bot.gateway import Gateway
from bot.logging import setup_logging
from bot.providers.testing import ScriptedProvider
from bot.security.audit import audit
from tests.fakes.channel import RecordingChannel

CONFIG = """
[http]
enabled = false
[gateway]
owners = ["test:boss"]
[logging]
file = "logs/decapod.log"
[sandbox]
backend = "none"
[memory]
enabled = false
"""
REPAIRED = "made private"


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(home: Path) -> dict[str, str]:
    found = {".": oct(stat.S_IMODE(home.stat().st_mode))}
    for folder, dirs, files in os.walk(home):
        for name in dirs + files:
            path = Path(folder, name)
            found[str(path.relative_to(home))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def _private(modes: dict[str, str], home: Path) -> bool:
    return all(
        mode == ("0o700" if (home / name).is_dir() else "0o600") for name, mode in modes.items()
    )


async def _chat(config: Any, home: Path, delivery_id: str = "d1") -> dict[str, str]:
    """Start as `decapod run` does after its `setup_logging` (the test's, once: a second one
    would drop the first's log file unclosed), answer one message; the modes while it runs."""
    channel = RecordingChannel(console=True)
    async with Gateway(config, provider=ScriptedProvider(["ok"]), channels={"test": channel}):
        await channel.push("hello", user="boss", delivery_id=delivery_id)
        await channel.wait_for_messages(1)
        return _modes(home)


@pytest.mark.usefixtures("umask_022")
async def test_an_existing_shared_home_is_made_private_at_start(home: Path) -> None:
    home.mkdir(mode=0o755)
    (home / "config.toml").write_text(CONFIG)
    (home / "logs").mkdir()
    (home / "logs" / "decapod.log").write_text("")
    # a database an earlier version left behind, with its WAL and shared memory still open
    earlier = sqlite3.connect(home / "decapod.db")
    earlier.execute("PRAGMA journal_mode = WAL")
    earlier.execute("CREATE TABLE leftover (x)")
    before = _modes(home)
    assert {before[n] for n in ("decapod.db", "decapod.db-wal", "decapod.db-shm")} == {"0o644"}
    assert before["."] == before["logs"] == "0o755"
    try:
        config = load_config(home / "config.toml", home)
        before_start = " ".join(f.what for f in audit(config))
        assert "can be read by other users" in before_start and "decapod.db-wal" in before_start
        setup_logging("INFO", "json", config.log_file)
        running = await _chat(config, home)
    finally:
        earlier.close()
    assert {"decapod.db-wal", "decapod.db-shm", "logs/decapod.log"} <= running.keys()
    assert _private(running, home), running
    assert _private(_modes(home), home)
    assert audit(config, home / "config.toml") == []
    log = (home / "logs" / "decapod.log").read_text()
    assert log.count(REPAIRED) == 1 and "decapod.db" in log and "config.toml" in log

    await _chat(config, home, "d2")  # nothing left to repair: nothing said
    assert (home / "logs" / "decapod.log").read_text().count(REPAIRED) == 1


@pytest.mark.usefixtures("umask_022")
async def test_a_new_home_is_created_private(home: Path, make_config: Any) -> None:
    config = make_config(
        logging={"file": "logs/decapod.log"}, sandbox={"backend": "none"}, memory={"enabled": False}
    )
    setup_logging("INFO", "json", config.log_file)
    running = await _chat(config, home)
    assert {".", "decapod.db", "decapod.db-wal", "logs", "logs/decapod.log"} <= running.keys()
    assert _private(running, home), running
    assert REPAIRED not in (home / "logs" / "decapod.log").read_text()


@pytest.mark.usefixtures("umask_022")
def test_a_cli_command_on_a_new_home_creates_it_private(home: Path) -> None:
    from bot.cli import main

    assert main(["pairing", "list"]) == 0
    modes = _modes(home)
    assert {".", "decapod.db"} <= modes.keys() and _private(modes, home), modes


@pytest.mark.usefixtures("umask_022")
def test_a_symlinked_home_is_followed_and_links_inside_it_are_not(tmp_path: Path) -> None:
    from bot.security.files import secure_home

    real, outside = tmp_path / "disk" / "decapod", tmp_path / "shared.txt"
    real.mkdir(parents=True, mode=0o755)
    outside.write_text("not ours to change")
    (real / "link").symlink_to(outside)
    (real / "decapod.db").write_text("")
    (tmp_path / "home").symlink_to(real)
    repaired = secure_home(tmp_path / "home")
    assert sorted(repaired) == sorted([real, real / "decapod.db"])
    assert stat.S_IMODE(real.stat().st_mode) == 0o700
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
