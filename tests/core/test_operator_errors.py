"""What the operator sees when the machine stops a command: one line naming the cause and
the fix, a non-zero exit, and no traceback. The faults are real: a port another socket
holds, and a home folder on a read-only mount (bubblewrap's --ro-bind, which stops root too).
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.errors import StorageUnavailable
from bot.operate import explain

CONFIG = """
[http]
enabled = {http}
port = {port}

[providers.fake]
base_url = "http://127.0.0.1:9/v1"
api_key_env = "FAKE_LLM_KEY"

[models]
chat = ["fake:m"]

[sandbox]
backend = "none"
"""


def _home(tmp_path: Path, *, http: bool = False, port: int = 0) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG.format(http=str(http).lower(), port=port))
    return home


def _decapod(
    home: Path, *args: str, wrap: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DECAPOD_HOME": str(home), "FAKE_LLM_KEY": "sk-test-key-x"}
    return subprocess.run(
        [*wrap, sys.executable, "-m", "bot", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _said(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """What the command said to the terminal, without its structured log records."""
    lines = (proc.stdout + proc.stderr).splitlines()
    return [line for line in lines if line.strip() and not line.startswith('{"ts"')]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_port_in_use_is_one_line_and_a_non_zero_exit(tmp_path: Path, taken_port: int) -> None:
    home = _home(tmp_path, http=True, port=taken_port)

    proc = _decapod(home, "run")

    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    (line,) = _said(proc)
    assert line.startswith(f"decapod: cannot listen on 127.0.0.1:{taken_port}")
    assert "[http] port" in line


def _read_only_wrap(home: Path) -> tuple[str, ...]:
    bwrap = shutil.which("bwrap")
    wrap = (bwrap or "bwrap", "--dev-bind", "/", "/", "--ro-bind", str(home), str(home))
    if bwrap is None or subprocess.run([*wrap, "true"], capture_output=True).returncode:
        pytest.skip("bubblewrap cannot mount here (it is needed for the sandbox tests too)")
    return wrap


@pytest.mark.parametrize(
    "command",
    [
        ("run",),
        ("chat",),
        ("migrate",),
        ("pairing", "list"),
        ("reminders", "list"),
        ("memory", "export"),
        ("init", "--yes", "--force"),
    ],
)
def test_read_only_home_is_one_line_and_a_non_zero_exit(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    home = _home(tmp_path)
    assert _decapod(home, "migrate").returncode == 0  # the database exists; then the mount
    wrap = _read_only_wrap(home)

    proc = _decapod(home, *command, wrap=wrap)

    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr
    (line,) = _said(proc)
    assert line.startswith("decapod: ") and "read-only" in line, line
    assert "DECAPOD_HOME" in line  # the way out: another home


def test_doctor_on_a_read_only_home_reports_instead_of_crashing(tmp_path: Path) -> None:
    home = _home(tmp_path)
    assert _decapod(home, "migrate").returncode == 0
    proc = _decapod(home, "doctor", wrap=_read_only_wrap(home))

    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    said = _said(proc)
    assert any(line.startswith("FAIL memory") and "read-only" in line for line in said), said
    assert said[-1].endswith("check(s) failed")


def _newer(db: Path) -> None:
    """What a newer version leaves: a migration this one does not have."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("INSERT INTO _migrations VALUES ('m999_future', 1.0)")
    conn.close()


def _damaged(db: Path) -> None:
    db.write_bytes(b"\x8b\x1f this was never a database " * 400)
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)


@pytest.mark.parametrize(
    ("spoil", "said"),
    [(_newer, "newer version of decapod (migrations m999_future"), (_damaged, "is damaged")],
)
def test_a_damaged_or_newer_database_is_named_by_run_and_doctor(
    tmp_path: Path, spoil: Callable[[Path], None], said: str
) -> None:
    home = _home(tmp_path)
    assert _decapod(home, "migrate").returncode == 0
    db = home / "decapod.db"
    spoil(db)
    before = db.read_bytes()

    run = _decapod(home, "run")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    (line,) = _said(run)
    assert line.startswith("decapod: the database ") and said in line, line
    assert "disk not full" not in line  # not the hint for a full or read-only disk

    doctor = _decapod(home, "doctor")
    assert doctor.returncode == 1 and "Traceback" not in doctor.stderr
    assert any(x.startswith("FAIL database") and said in x for x in _said(doctor)), doctor
    assert db.read_bytes() == before  # refused, not changed


def test_postgresql_refusals_are_explained_as_the_servers_not_the_disks() -> None:
    url = "postgresql://decapod@db.internal:5432/decapod"
    said = {r: explain(StorageUnavailable(r, url)) or "" for r in ("unreachable", "busy", "full")}
    assert "cannot be reached" in said["unreachable"] and url in said["unreachable"]
    assert all("PostgreSQL server" in line for line in said.values())
    assert not any("another process" in line or "the disk" in line for line in said.values())
    assert "disk holding" in (explain(StorageUnavailable("full", "/home/x/decapod.db")) or "")
