"""The sandbox run by a non-root gateway, as the shipped systemd unit runs it.

Each test starts a real gateway-side process as a non-root user (the one .ci/sandbox-setup.sh
creates, `decapod-ci`; or any uid, which setpriv needs no account for) and lets it pick and
use the bwrap backend. When pytest itself is not root, that process simply runs as the
current user. The only skip is for a host where no non-root process can be had at all.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.sandbox.cgroups import CGROUP_ROOT, CONTROLLERS

ROOT = Path(__file__).resolve().parents[2]
TEST_USER = os.environ.get("DECAPOD_TEST_USER", "decapod-ci")
#: used when the test user does not exist: setpriv needs no account for a uid
FALLBACK_UID = 64_321

#: the gateway side, run as the test user: choose a backend, run commands, report as JSON
CHILD = r"""
import asyncio, json, os, sys
from pathlib import Path
from bot.config import load_config
from bot.doctor import check_sandbox
from bot.sandbox import Limits, SandboxConfig, choose_backend

async def main(args):
    home = Path(args["home"])
    sandbox = SandboxConfig(backend="bwrap", **args["config"])
    selection = await choose_backend(sandbox, home)
    out = {"uid": os.geteuid(), "line": selection.line, "runs": selection.backend is not None}
    enforced = selection.enforcement
    out["missing"] = sorted(enforced.missing) if enforced else None
    out["results"] = {}
    if selection.backend is not None:
        try:
            for name, argv in args["commands"].items():
                r = await selection.backend.exec(
                    "nonroot", argv, stdin=None, limits=Limits(**args["limits"]), timeout=60
                )
                out["results"][name] = {
                    "exit_code": r.exit_code,
                    "stdout": r.stdout.decode(errors="replace"),
                    "stderr": r.stderr.decode(errors="replace")[-2000:],
                    "killed_reason": r.killed_reason,
                }
        finally:
            await selection.backend.aclose()
    config = load_config(None, home).model_copy(update={"sandbox": sandbox})
    out["doctor"] = await check_sandbox(config)
    print(json.dumps(out))

asyncio.run(main(json.loads(sys.argv[1])))
"""

#: 300 forks under a 64-process limit: the sandbox must stop them
FORKS = """
import os, time
n = 0
try:
    for _ in range(300):
        if os.fork() == 0:
            time.sleep(5)
            os._exit(0)
        n += 1
except OSError as exc:
    print("fork failed after", n, exc.errno)
else:
    print("forked", n)
"""

#: three processes of 48 MiB each, touched: each under a 64 MiB limit, together over it
SPREAD = """
import os, time
for _ in range(2):
    if os.fork() == 0:
        break
block = bytearray(48 << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
print("allocated", flush=True)
time.sleep(2)
"""

LIMITS = {
    "memory_mb": 64,
    "pids": 64,
    "cpu_seconds": 10,
    "wall_seconds": 60,
    "file_size_mb": 10,
    "nofile": 256,
}
#: files past the quota, in a directory its owner (the gateway's uid) can no longer read
HIDDEN = (
    "mkdir -p hide/deep && head -c 9000000 /dev/zero > hide/deep/a && "
    "head -c 9000000 /dev/zero > hide/deep/b; chmod 000 hide"
)
COMMANDS = {
    "forks": ["python3", "-c", FORKS],
    "spread": ["python3", "-c", SPREAD],
    "hidden": ["/bin/sh", "-c", HIDDEN],
}
QUOTA = {"workspace_quota_mb": 16}


def identity() -> tuple[int, int] | None:
    """The (uid, gid) to switch to, or None when this process is not root already."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        return FALLBACK_UID, FALLBACK_UID
    return entry.pw_uid, entry.pw_gid


def switch_prefix() -> list[str]:
    who = identity()
    if who is None:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("cannot become non-root: setpriv (util-linux) is not installed")
    return [setpriv, f"--reuid={who[0]}", f"--regid={who[1]}", "--clear-groups", "--"]


def child_env(home: Path) -> dict[str, str]:
    paths = [str(ROOT), *site.getsitepackages()]
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(paths),
        "HOME": str(home),
        "DECAPOD_HOME": str(home),
        # the bwrap backend is chosen explicitly; no daemon is asked
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
    }


@functools.cache
def interpreter() -> str:
    """A Python the test user can run with this checkout's dependencies: this one, or the
    system's of the same version (a virtualenv under a root-only home is not runnable)."""
    probe = "import bot.sandbox, pydantic, sys; print(sys.version_info[:2])"
    home = Path(tempfile.mkdtemp(prefix="decapod-probe-"))
    want = str(tuple(sys.version_info[:2]))
    try:
        for candidate in (sys.executable, "/usr/bin/python3"):
            proc = subprocess.run(
                [*switch_prefix(), candidate, "-c", probe],
                env=child_env(home),
                cwd=home,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if proc.returncode == 0 and proc.stdout.strip() == want:
                return candidate
    finally:
        shutil.rmtree(home, ignore_errors=True)
    pytest.fail(
        f"no Python {want} with this checkout's dependencies is runnable by the test user "
        "(install the virtualenv where that user can read it)"
    )


@pytest.fixture
def user_home() -> Iterator[Path]:
    """A home the test user owns (pytest's own tmp_path is root-only)."""
    home = Path(tempfile.mkdtemp(prefix="decapod-nonroot-"))
    who = identity()
    if who is not None:
        os.chown(home, *who)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run_gateway(
    home: Path, *, config: dict[str, Any], start_in: Path | None = None
) -> dict[str, Any]:
    """Run CHILD as the test user; `start_in`: the cgroup it starts in, as a unit's would."""
    args = {"home": str(home), "config": config, "limits": LIMITS, "commands": COMMANDS}
    join = []
    if start_in is not None:
        join = ["/bin/sh", "-c", f'echo $$ > {start_in / "cgroup.procs"} && exec "$@"', "sh"]
    proc = subprocess.run(
        [*join, *switch_prefix(), interpreter(), "-c", CHILD, json.dumps(args)],
        env=child_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["uid"] != 0
    return out


def forks_stopped(result: dict[str, Any]) -> int:
    words = result["stdout"].split()
    assert words[:3] == ["fork", "failed", "after"], result
    return int(words[3])


def doctor_row(out: dict[str, Any], what: str) -> tuple[bool, str]:
    return next((ok, detail) for name, ok, detail in out["doctor"] if name == what)


def test_without_a_cgroup_exec_stays_off_and_says_which_limits(user_home: Path) -> None:
    out = run_gateway(user_home, config={})
    if not out["missing"]:
        pytest.skip(f"uid {out['uid']} has a delegated cgroup here: {out['line']}")
    assert not out["runs"]
    assert "bwrap: cannot enforce memory (RLIMIT_AS bounds each process" in out["line"]
    assert "sandbox.allow_unenforced_limits = true" in out["line"]
    assert "memory" in out["missing"] and "processes" not in out["missing"]
    ok, detail = doctor_row(out, "sandbox limits")
    assert not ok and detail.startswith("NOT enforced: memory") and "Delegate=yes" in detail


def test_the_owner_may_opt_in_and_processes_are_still_bounded(user_home: Path) -> None:
    out = run_gateway(user_home, config={"allow_unenforced_limits": True, **QUOTA})
    assert out["runs"], out["line"]
    assert "processes: RLIMIT_NPROC in the sandbox's user namespace" in out["line"]
    # RLIMIT_NPROC, set inside the sandbox's user namespace, counts this command only
    assert forks_stopped(out["results"]["forks"]) < LIMITS["pids"]
    if out["missing"]:
        assert "NOT enforced: memory" in out["line"]
        assert "(allowed by sandbox.allow_unenforced_limits)" in out["line"]
        # the documented gap: three processes may hold more than memory_mb together
        assert out["results"]["spread"]["stdout"].count("allocated") == 3
        ok, detail = doctor_row(out, "sandbox limits")
        assert ok and "allowed by allow_unenforced_limits" in detail
    # the gateway owns the files: it opens what the sandbox hid, then undoes the growth
    hidden = out["results"]["hidden"]["killed_reason"] or ""
    assert "removed hide/deep/b (new" in hidden and "still over" not in hidden, hidden


@pytest.fixture
def delegated_v1(user_home: Path) -> Iterator[str]:
    """Per-controller cgroup v1 parents that an administrator made and chowned to the
    test user: what docs/sandbox.md describes for a non-root gateway on a v1 host."""
    who = identity()
    if who is None:
        pytest.skip("not root: cannot delegate a cgroup v1 subtree to the test user")
    if not all((CGROUP_ROOT / c / "cgroup.procs").exists() for c in CONTROLLERS):
        pytest.skip("no cgroup v1 memory, pids and cpu hierarchies on this host")
    name = f"decapod-ci-{os.getpid()}"
    made = []
    try:
        for controller in CONTROLLERS:
            parent = CGROUP_ROOT / controller / name
            parent.mkdir()
            made.append(parent)
            os.chown(parent, *who)
            for entry in ("cgroup.procs", "tasks"):
                if (parent / entry).exists():
                    os.chown(parent / entry, *who)
        yield name
    finally:
        for parent in made:
            for child in parent.iterdir():
                if child.is_dir():
                    child.rmdir()
            parent.rmdir()


def test_a_delegated_v1_subtree_enforces_everything(user_home: Path, delegated_v1: str) -> None:
    out = run_gateway(user_home, config={"cgroup_parent": delegated_v1})
    assert out["runs"] and out["missing"] == [], out["line"]
    assert "memory, processes, CPU share: cgroup v1" in out["line"]
    spread = out["results"]["spread"]
    assert spread["stdout"].count("allocated") < 3, spread
    assert spread["killed_reason"] == f"memory limit ({LIMITS['memory_mb']} MiB)", spread
    assert forks_stopped(out["results"]["forks"]) < LIMITS["pids"]
    ok, detail = doctor_row(out, "sandbox limits")
    assert ok and detail.startswith("all enforced")


@pytest.fixture
def delegated_v2(user_home: Path) -> Iterator[Path]:
    """A cgroup v2 group handed to the test user the way systemd's Delegate=yes hands the
    unit's group to its service user (the directory and its cgroup.procs,
    cgroup.subtree_control and cgroup.threads chowned), for the gateway to start in."""
    who = identity()
    if who is None:
        pytest.skip("not root: cannot delegate a cgroup v2 group to the test user")
    mount = next(
        (Path(line.split()[1]) for line in Path("/proc/mounts").read_text().splitlines()
         if line.split()[2] == "cgroup2"),
        None,
    )  # fmt: skip
    offered = (mount / "cgroup.subtree_control").read_text().split() if mount else []
    if mount is None or not {"memory", "pids"} <= set(offered):
        pytest.skip(f"cgroup v2 hands no memory and pids controllers to groups here ({mount})")
    group = mount / f"decapod-ci-{os.getpid()}"
    group.mkdir()
    try:
        os.chown(group, *who)
        for entry in ("cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
            os.chown(group / entry, *who)
        yield group
    finally:
        for leaf in sorted(group.rglob("*"), key=lambda p: -len(p.parts)):
            if leaf.is_dir():
                leaf.rmdir()
        group.rmdir()


def test_a_delegated_v2_group_enforces_everything(user_home: Path, delegated_v2: Path) -> None:
    out = run_gateway(user_home, config={}, start_in=delegated_v2)
    assert out["runs"] and out["missing"] == [], out["line"]
    assert "memory, processes, CPU share: cgroup v2" in out["line"]
    spread = out["results"]["spread"]
    assert spread["killed_reason"] == f"memory limit ({LIMITS['memory_mb']} MiB)", spread
    assert forks_stopped(out["results"]["forks"]) < LIMITS["pids"]
    # the gateway moved itself into a leaf, so that its group could hand out controllers
    assert (delegated_v2 / "decapod-sandbox-gateway").is_dir()


def test_the_shipped_unit_delegates_its_cgroup_to_its_non_root_user() -> None:
    unit = (ROOT / "systemd" / "decapod.service").read_text().splitlines()
    settings = dict(line.split("=", 1) for line in unit if "=" in line and line[0] != "#")
    assert settings["DynamicUser"] == "yes"  # non-root: the case this file tests
    assert settings["Delegate"] == "yes"
    # a read-only /sys/fs/cgroup would make the delegated group useless
    assert settings.get("ProtectControlGroups", "no") == "no"
    assert settings["RestrictNamespaces"] == "no"  # bwrap makes its namespaces itself
