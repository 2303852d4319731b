"""The owner's skills are mounted read-only at /skills in every command's sandbox."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.sandbox import SandboxConfig, select_backend
from tests.sandbox.conftest import TEST_LIMITS, assert_nothing_left, docker_skip_reason
from tests.skills.conftest import simple_skill, write_skill


@pytest.fixture
def shared_skills() -> Iterator[Path]:
    # readable by the sandbox uid (as root, commands run as nobody and a home is 0700),
    # and not under /tmp, which the root launcher covers with its own tmpfs
    top = Path(tempfile.mkdtemp(prefix="decapod-skills-", dir="/var/tmp"))
    try:
        top.chmod(0o755)
        folder = write_skill(top, "weather", simple_skill("weather", "Weather."))
        (folder / "get.sh").write_text("echo sunny\n")
        for path in (folder, folder / "SKILL.md", folder / "get.sh"):
            path.chmod(0o755)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("kind", ["bwrap", "docker"])
async def test_skills_are_readable_and_read_only_in_the_sandbox(
    kind: str, tmp_path: Path, shared_skills: Path
) -> None:
    if kind == "bwrap" and shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    if kind == "docker" and (reason := docker_skip_reason()) is not None:
        pytest.skip(reason)
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    backend, why = await select_backend(
        SandboxConfig(backend=kind), home, {"/skills": shared_skills}
    )
    assert backend is not None, why
    try:
        ran = await backend.exec(
            "s1", ["sh", "/skills/weather/get.sh"], stdin=None, limits=TEST_LIMITS, timeout=30
        )
        assert (ran.exit_code, ran.stdout) == (0, b"sunny\n"), ran
        wrote = await backend.exec(
            "s1",
            ["sh", "-c", "echo x > /skills/weather/evil.sh"],
            stdin=None,
            limits=TEST_LIMITS,
            timeout=30,
        )
        assert wrote.exit_code != 0 and b"Read-only file system" in wrote.stderr, wrote
        assert not (shared_skills / "weather" / "evil.sh").exists()
    finally:
        await backend.aclose()
    assert_nothing_left(backend)
