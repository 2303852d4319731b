"""Backend selection at start: docker → bwrap → (host, if allowed) → disabled, with a reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TEST_LIMITS, assert_nothing_left, docker_skip_reason

from bot.sandbox import SandboxConfig, select_backend, workspace_manager

NO_DAEMON = "unix:///nonexistent/docker.sock"


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PATH with the util-linux helpers but without bwrap."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("setpriv", "prlimit", "unshare"):
        found = subprocess.run(["which", name], capture_output=True, text=True, check=True)
        (bin_dir / name).symlink_to(found.stdout.strip())
    monkeypatch.setenv("PATH", str(bin_dir))


async def test_auto_prefers_docker(home: Path) -> None:
    if (reason := docker_skip_reason()) is not None:
        pytest.skip(reason)
    backend, why = await select_backend(SandboxConfig(), home)
    assert backend is not None and backend.name == "docker", why
    assert why.startswith("docker ") and "one container per command" in why
    await backend.aclose()
    assert_nothing_left(backend)


async def test_auto_falls_back_to_bwrap(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON)
    backend, why = await select_backend(SandboxConfig(), home)
    assert backend is not None and backend.name == "bwrap", why
    assert why.startswith("bwrap (bubblewrap ") and "not used: docker: no Docker daemon" in why
    await backend.aclose()

    if docker_skip_reason() is None:  # a daemon, but not the image
        monkeypatch.delenv("DOCKER_HOST")
        missing = SandboxConfig(docker_image="decapod/absent:never")
        backend, why = await select_backend(missing, home)
        assert backend is not None and backend.name == "bwrap", why
        assert "image decapod/absent:never is not present" in why
        await backend.aclose()


async def test_nothing_available_disables_exec_with_the_reasons(
    home: Path, monkeypatch: pytest.MonkeyPatch, no_bwrap: None
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON)
    backend, why = await select_backend(SandboxConfig(), home)
    assert backend is None
    assert why.startswith("exec tools disabled: docker: no Docker daemon answers")
    assert "(/nonexistent/docker.sock: No such file or directory)" in why
    assert "bwrap: bwrap is not installed" in why


async def test_explicit_choice_never_falls_back(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_DAEMON)
    config = SandboxConfig(backend="docker", allow_host_exec=True)
    backend, why = await select_backend(config, home)
    assert backend is None and why.startswith("exec tools disabled: docker:"), why

    backend, why = await select_backend(SandboxConfig(backend="bwrap"), home)
    assert backend is not None and backend.name == "bwrap" and "not used" not in why
    await backend.aclose()

    backend, why = await select_backend(SandboxConfig(backend="none"), home)
    assert backend is None and why == "exec tools disabled: sandbox.backend is none"


async def test_host_exec_only_when_allowed(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = SandboxConfig(backend="none", allow_host_exec=True)
    backend, why = await select_backend(config, home)
    assert backend is not None and backend.name == "host", why
    assert "UNSAFE" in why
    try:
        result = await backend.exec(
            "owner-dm", ["sh", "-c", "id -u; pwd; env"], stdin=None, limits=TEST_LIMITS, timeout=5
        )
    finally:
        await backend.aclose()
    lines = result.stdout.decode().splitlines()
    expected_uid = config.uid if os.geteuid() == 0 else os.geteuid()
    assert result.exit_code == 0 and lines[0] == str(expected_uid)
    assert lines[1] == str((await backend.prepare("owner-dm")).path)
    assert not any(line.startswith("FAKE") for line in lines)

    monkeypatch.setenv("PATH", "/nonexistent")  # nothing at all, and no host exec asked for
    backend, why = await select_backend(SandboxConfig(backend="none"), home)
    assert backend is None


async def test_selection_prunes_old_workspaces(home: Path) -> None:
    config = SandboxConfig(backend="none", workspace_max_age_days=1)
    manager = workspace_manager(config, home)
    old, fresh = manager.prepare("old-session"), manager.prepare("fresh-session")
    meta = home / "sandboxes" / f"{old.hash}.json"
    data = json.loads(meta.read_text())
    data["last_used"] = time.time() - 2 * 86400
    meta.write_text(json.dumps(data))
    await select_backend(config, home)
    assert not old.path.exists() and not meta.exists()
    assert fresh.path.exists()


def test_importing_the_package_does_not_import_docker() -> None:
    code = "import sys, bot.sandbox, bot.sandbox.cli; print('docker' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_docker_is_chosen_without_its_sdk_and_the_first_command_loads_it(home: Path) -> None:
    if (reason := docker_skip_reason()) is not None:
        pytest.skip(reason)
    code = (
        "import asyncio, json, sys\n"
        "from pathlib import Path\n"
        "from bot.sandbox import SandboxConfig, select_backend\n"
        "from bot.sandbox.base import Limits\n"
        "async def main():\n"
        "    config = SandboxConfig(backend='docker', allow_unenforced_limits=True)\n"
        f"    backend, why = await select_backend(config, Path({str(home)!r}))\n"
        "    assert backend is not None, why\n"
        "    at_start = 'docker' in sys.modules\n"
        "    limits = Limits(memory_mb=256, pids=64, cpu_seconds=2, wall_seconds=30,"
        " file_size_mb=10, nofile=256)\n"
        "    result = await backend.exec('s', ['/bin/sh', '-c', 'echo hi'], stdin=None,"
        " limits=limits, timeout=30)\n"
        "    await backend.aclose()\n"
        "    print(json.dumps([at_start, 'docker' in sys.modules, result.stdout.decode()]))\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    at_start, after, stdout = json.loads(out.stdout.strip().splitlines()[-1])

    assert (at_start, after) == (False, True)
    assert stdout.strip() == "hi"
