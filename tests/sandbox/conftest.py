"""Fixtures for the sandbox tests: real backends, no fakes of the sandbox itself.

`backend` runs each test on bwrap and on docker. The docker half skips, with the reason,
only when no daemon answers (.ci/sandbox-setup.sh starts one). Every backend is closed
after its test, and the teardown checks that no container or cgroup was left behind.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.deps import SandboxDeps
from bot.messages import Conversation, ConversationKind, Identity
from bot.sandbox import (
    ApprovalBroker,
    Limits,
    SandboxBackend,
    SandboxConfig,
    WorkspaceManager,
    select_backend,
)
from bot.sandbox.cgroups import CGROUP_ROOT, CONTROLLERS
from bot.sandbox.docker_backend import unix_socket_problem
from bot.tools import ToolContext
from tests.deps import make_deps

#: small limits so that every limit test finishes in seconds
TEST_LIMITS = Limits(
    memory_mb=256, pids=64, cpu_seconds=2, wall_seconds=30, file_size_mb=10, nofile=256
)


@functools.cache
def docker_skip_reason() -> str | None:
    if (problem := unix_socket_problem()) is not None:
        return f"no Docker daemon answers ({problem}); run .ci/sandbox-setup.sh"
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"no Docker daemon answers ({type(exc).__name__}); run .ci/sandbox-setup.sh"
    return None


def docker_client() -> Any:
    import docker

    return docker.from_env(timeout=30)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    return path


async def start_backend(kind: str, home: Path, **config: Any) -> SandboxBackend:
    """A real backend of this kind; the docker one skips, saying why, without a daemon."""
    if kind == "docker" and (reason := docker_skip_reason()) is not None:
        pytest.skip(reason)
    # These tests check isolation and limits by running commands; whether a backend that
    # cannot enforce every limit is used at all is test_sandbox_nonroot.py's subject.
    config.setdefault("allow_unenforced_limits", True)
    chosen, why = await select_backend(SandboxConfig(backend=kind, **config), home)
    assert chosen is not None and chosen.name == kind, why
    return chosen


@pytest.fixture(params=["bwrap", "docker"])
async def backend(request: pytest.FixtureRequest, home: Path) -> AsyncIterator[SandboxBackend]:
    chosen = await start_backend(request.param, home)
    try:
        yield chosen
    finally:
        await chosen.aclose()
    assert_nothing_left(chosen)


@pytest.fixture
async def bwrap_backend(home: Path) -> AsyncIterator[SandboxBackend]:
    chosen = await start_backend("bwrap", home)
    try:
        yield chosen
    finally:
        await chosen.aclose()
    assert_nothing_left(chosen)


def assert_nothing_left(backend: SandboxBackend) -> None:
    mine = f"{os.getpid()}-"
    parent_name = SandboxConfig().cgroup_parent
    cgroups = getattr(backend, "cgroups", None)
    v2_base = getattr(cgroups, "base", None)
    for controller in CONTROLLERS:
        parent = v2_base or CGROUP_ROOT / controller / parent_name
        if parent.is_dir():
            left = [p.name for p in parent.iterdir() if p.is_dir() and p.name.startswith(mine)]
            assert left == [], f"cgroups left behind in {controller}: {left}"
    if backend.name == "docker":
        client = docker_client()
        try:
            label = f"decapod.sandbox={backend.instance}"
            assert client.api.containers(all=True, filters={"label": label}) == []
        finally:
            client.close()


async def run_sh(
    backend: SandboxBackend,
    session: str,
    script: str,
    *,
    timeout: float = 20,
    limits: Limits = TEST_LIMITS,
    stdin: bytes | None = None,
) -> Any:
    return await backend.exec(
        session, ["/bin/sh", "-c", script], stdin=stdin, limits=limits, timeout=timeout
    )


async def run_py(
    backend: SandboxBackend,
    session: str,
    code: str,
    *,
    timeout: float = 20,
    limits: Limits = TEST_LIMITS,
) -> Any:
    return await backend.exec(
        session, ["python3", "-c", code], stdin=None, limits=limits, timeout=timeout
    )


def host_pids_matching(marker: str) -> list[int]:
    """Pids on the host whose command line contains `marker` (the test process excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return found


def pgrep_count(marker: str) -> int:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return len(out.stdout.split())


def make_ctx(
    *,
    role: str = "owner",
    group: bool = False,
    session: str = "telegram:dm:42",
    tainted: bool = False,
    sandbox: Any = None,
    workspaces: WorkspaceManager | None = None,
    sandbox_config: SandboxConfig | None = None,
    approvals: ApprovalBroker | None = None,
    redact: Callable[[str], str] | None = None,
) -> ToolContext:
    """A tool context with the sandbox part built from what the test gives: `sandbox` is
    the backend (its own workspaces serve when `workspaces` is not given); with neither,
    the sandbox part is off."""
    kind = ConversationKind.GROUP if group else ConversationKind.DM
    workspaces = workspaces or getattr(sandbox, "workspaces", None)
    part = None
    if sandbox is not None or workspaces is not None:
        part = SandboxDeps(sandbox_config or SandboxConfig(), workspaces, sandbox, approvals)  # type: ignore[arg-type]
    return ToolContext(
        identity=Identity("telegram", "42", "Ada"),
        conversation=Conversation("telegram", "42", kind),
        session_key=session,
        deps=make_deps(redact=redact, sandbox=part),
        role=role,
        tainted=tainted,
    )


@pytest.fixture(autouse=True)
def _host_python() -> None:
    # The sandboxes borrow the host's /usr, and the tests' payloads are python3 scripts.
    if not Path("/usr/bin/python3").exists():
        pytest.skip("tests run /usr/bin/python3 inside the sandbox, and it is missing")
