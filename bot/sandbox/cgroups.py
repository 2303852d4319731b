"""Per-command cgroup v1 groups (memory, pids, cpu), used when the hierarchy is writable.

Each command gets `/sys/fs/cgroup/<controller>/decapod-sandbox/<gateway pid>-<n>`. The
launcher shell writes its own pid into every `cgroup.procs` before it execs the sandbox, so
nothing the command forks can start outside the group. The group is emptied with SIGKILL
and removed after the command, and groups left by a gateway that died are reaped at start.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
from pathlib import Path

from bot.sandbox.base import Limits

log = logging.getLogger("decapod.sandbox")

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "decapod-sandbox"
CONTROLLERS = ("memory", "pids", "cpu")
_CFS_PERIOD_US = 100_000
_counter = itertools.count(1)


def writable_controllers(root: Path = CGROUP_ROOT) -> tuple[str, ...]:
    """The v1 controllers we can create per-command groups in."""
    found = []
    for name in CONTROLLERS:
        base = root / name
        if not (base / "cgroup.procs").exists():
            continue  # not a v1 hierarchy (v2 unified or not mounted)
        try:
            (base / PARENT).mkdir(exist_ok=True)
        except OSError:
            continue
        # an existing parent (made by an earlier root run) proves nothing about us
        if os.access(base / PARENT, os.W_OK | os.X_OK):
            found.append(name)
    return tuple(found)


def reap_orphans(controllers: tuple[str, ...], root: Path = CGROUP_ROOT) -> int:
    """Kill and remove groups whose gateway process is gone. Returns how many were removed."""
    removed = 0
    for name in controllers:
        parent = root / name / PARENT
        for group in parent.iterdir() if parent.is_dir() else ():
            owner = group.name.split("-", 1)[0]
            if not group.is_dir() or not owner.isdigit() or _alive(int(owner)):
                continue
            _kill_procs(group)
            try:
                group.rmdir()
                removed += 1
            except OSError as exc:
                log.warning("could not remove stale cgroup %s: %s", group, exc)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_procs(group: Path) -> int:
    try:
        pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


class CommandCgroup:
    """The groups for one command, one per available controller."""

    def __init__(self, controllers: tuple[str, ...], root: Path = CGROUP_ROOT) -> None:
        name = f"{os.getpid()}-{next(_counter)}"
        self.dirs = {c: root / c / PARENT / name for c in controllers}

    def create(self, limits: Limits) -> None:
        for controller, path in self.dirs.items():
            path.mkdir()
            if controller == "memory":
                limit = str(limits.memory_mb << 20)
                (path / "memory.limit_in_bytes").write_text(limit)
                if (path / "memory.memsw.limit_in_bytes").exists():  # no swap either
                    (path / "memory.memsw.limit_in_bytes").write_text(limit)
            elif controller == "pids":
                (path / "pids.max").write_text(str(limits.pids))
            elif controller == "cpu":
                (path / "cpu.cfs_period_us").write_text(str(_CFS_PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(str(int(limits.cpus * _CFS_PERIOD_US)))

    @property
    def procs_files(self) -> list[Path]:
        return [path / "cgroup.procs" for path in self.dirs.values()]

    def enforces(self, controller: str) -> bool:
        return controller in self.dirs

    def kill_all(self) -> None:
        for path in self.dirs.values():
            _kill_procs(path)

    def oom_killed(self) -> bool:
        path = self.dirs.get("memory")
        if path is None:
            return False
        try:
            for line in (path / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value) > 0
        except (OSError, ValueError):
            pass
        return False

    async def remove(self) -> None:
        """Kill what is left and remove the groups; a group is busy until its tasks exit."""
        for path in self.dirs.values():
            for _ in range(100):
                _kill_procs(path)
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    await asyncio.sleep(0.01)
            else:
                log.warning("cgroup %s still busy; reaped at next start", path)
