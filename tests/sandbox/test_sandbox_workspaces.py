"""Session workspaces: naming, ownership, ls / rm / prune, and the `decapod sandbox` CLI."""

from __future__ import annotations

import argparse
import json
import os
import stat
import time
from pathlib import Path

import pytest

from bot.sandbox import SandboxBackend, SandboxConfig, WorkspaceManager, workspace_manager
from bot.sandbox.cli import add_subparsers, run


def age(manager: WorkspaceManager, h: str, seconds: float) -> None:
    meta = manager.root / f"{h}.json"
    data = json.loads(meta.read_text())
    data["last_used"] = time.time() - seconds
    meta.write_text(json.dumps(data))


def test_workspace_naming_mode_and_metadata(home: Path) -> None:
    manager = workspace_manager(SandboxConfig(), home)
    ws = manager.prepare("telegram:dm:12345")
    assert ws.path.parent == home / "sandboxes"
    assert len(ws.hash) == 32 and int(ws.hash, 16) >= 0
    assert "12345" not in ws.hash
    assert manager.prepare("telegram:dm:12345").hash == ws.hash
    assert manager.prepare("telegram:dm:12346").hash != ws.hash
    st = ws.path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert stat.S_IMODE((home / "sandboxes").stat().st_mode) == 0o700
    meta = json.loads((home / "sandboxes" / f"{ws.hash}.json").read_text())
    assert meta["session_key"] == "telegram:dm:12345"
    assert meta["created"] <= meta["last_used"]
    # another manager on the same home (the CLI) derives the same names
    assert WorkspaceManager(home / "sandboxes").hash_for("telegram:dm:12345") == ws.hash


def test_ls_rm_and_prune(home: Path, tmp_path: Path) -> None:
    manager = workspace_manager(SandboxConfig(), home)
    _a, b, c = (manager.prepare(k) for k in ("session-a", "session-b", "session-c"))
    (b.path / "file.txt").write_text("x" * 100)
    listed = {w.session_key: w for w in manager.ls()}
    assert set(listed) == {"session-a", "session-b", "session-c"}
    assert listed["session-b"].size_bytes == 100

    assert manager.rm("session-a")  # by session key
    assert manager.rm(b.hash)  # by full hash
    assert not manager.rm("session-a") and not manager.rm("nothing-like-it")
    assert [w.hash for w in manager.ls()] == [c.hash]

    # removing never follows a symlink out of the workspace
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    os.symlink(outside, c.path / "link")
    age(manager, c.hash, 3 * 86400)
    fresh = manager.prepare("session-d")
    removed = manager.prune(2 * 86400)
    assert [w.hash for w in removed] == [c.hash]
    assert not c.path.exists() and (outside / "keep.txt").read_text() == "keep"
    assert [w.hash for w in manager.ls()] == [fresh.hash]
    assert manager.rm(fresh.hash[:8])  # a unique prefix is enough


async def test_destroy_removes_the_sessions_workspace(bwrap_backend: SandboxBackend) -> None:
    await bwrap_backend.exec(
        "ending",
        ["touch", "/work/f"],
        stdin=None,
        limits=SandboxConfig().limits.to_limits(),
        timeout=5,
    )
    ws = await bwrap_backend.prepare("ending")
    assert (ws.path / "f").exists()
    await bwrap_backend.destroy("ending")
    assert not ws.path.exists()


def cli(home: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="decapod")
    add_subparsers(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(list(argv)), home)


def test_cli_ls_rm_prune(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(home, "sandbox", "ls") == 0
    assert capsys.readouterr().out == "no sandbox workspaces\n"

    manager = workspace_manager(SandboxConfig(), home)
    old = manager.prepare("slack:dm:old")
    new = manager.prepare("slack:dm:new")
    age(manager, old.hash, 40 * 86400)
    assert cli(home, "sandbox", "ls") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["HASH", "SIZE", "IDLE", "SESSION"]
    assert any(line.startswith(old.hash) and line.endswith("slack:dm:old") for line in out)
    assert any("40d" in line for line in out)

    assert cli(home, "sandbox", "ls", "--json") == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["session_key"] for r in records} == {"slack:dm:old", "slack:dm:new"}

    assert cli(home, "sandbox", "prune") == 0  # default: 30 days
    out = capsys.readouterr().out
    assert f"removed {old.hash}  slack:dm:old" in out and "1 workspace(s) removed" in out

    assert cli(home, "sandbox", "rm", "nope") == 1
    assert "no workspace matches 'nope'" in capsys.readouterr().out
    assert cli(home, "sandbox", "rm", "slack:dm:new") == 0
    assert not new.path.exists()
    assert cli(home, "sandbox", "prune", "--max-age-days", "0") == 0
