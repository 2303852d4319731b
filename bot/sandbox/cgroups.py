"""Per-command cgroups: memory, pids and CPU share for a whole process tree.

`find_cgroups(parent)` picks, once at start, where each command's group is made:

- cgroup v2, in the gateway's own delegated group (systemd `Delegate=yes`, or a group an
  administrator chowned to the gateway's user), or, for a root gateway outside any
  delegation, under the hierarchy's root; see cgroup_v2.py;
- cgroup v1, under `/sys/fs/cgroup/<controller>/<parent>` when that is writable (as root,
  or after an administrator made it and chowned it to the gateway's user); see cgroup_v1.py.

Each command gets a group named `<gateway pid>-<n>`. The launcher shell writes its own pid
into the group's `cgroup.procs` before it execs the sandbox, so nothing the command forks
starts outside it. After the command the group is emptied with SIGKILL and removed, and
groups left by a gateway that died are reaped at the next start.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Protocol

from bot.sandbox.base import Limits

log = logging.getLogger("decapod.sandbox")

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")
CFS_PERIOD_US = 100_000
_counter = itertools.count(1)


class CommandCgroup(ABC):
    """The group(s) one command runs in: one directory per controller on v1, one on v2."""

    def __init__(self, dirs: dict[str, Path]) -> None:
        self.dirs = dirs

    @abstractmethod
    def create(self, limits: Limits) -> None:
        """Make the group(s) and write the limits."""

    @abstractmethod
    def oom_killed(self) -> bool:
        """Whether the kernel killed a task of this group for going over its memory."""

    @property
    def procs_files(self) -> list[Path]:
        """The files the launcher writes its pid into."""
        return [path / "cgroup.procs" for path in dict.fromkeys(self.dirs.values())]

    def enforces(self, controller: str) -> bool:
        return controller in self.dirs

    def kill_all(self) -> None:
        for path in dict.fromkeys(self.dirs.values()):
            kill_procs(path)

    async def remove(self) -> None:
        """Kill what is left and remove the groups; a group is busy until its tasks exit."""
        for path in dict.fromkeys(self.dirs.values()):
            for _ in range(100):
                kill_procs(path)
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    await asyncio.sleep(0.01)
            else:
                log.warning("cgroup %s still busy; reaped at next start", path)


class CgroupHierarchy(Protocol):
    @property
    def version(self) -> str:
        """ "cgroup v1" or "cgroup v2", as the start-up line shows it."""

    @property
    def controllers(self) -> tuple[str, ...]:
        """The controllers each command's group enforces, a subset of CONTROLLERS."""

    def command_group(self) -> CommandCgroup: ...

    def reap_orphans(self) -> int: ...


def find_cgroups(parent: str, root: Path = CGROUP_ROOT) -> tuple[CgroupHierarchy | None, str]:
    """The hierarchy with the most usable controllers (v2 on a tie), and why the controllers
    it lacks are unavailable (empty when it has all of them)."""
    from bot.sandbox.cgroup_v1 import V1Hierarchy
    from bot.sandbox.cgroup_v2 import V2Hierarchy

    v2, why_v2 = V2Hierarchy.find(parent)
    if v2 is not None and len(v2.controllers) == len(CONTROLLERS):
        return v2, ""
    v1, why_v1 = V1Hierarchy.find(parent, root)
    found = [h for h in (v2, v1) if h is not None]
    best = max(found, key=lambda h: len(h.controllers), default=None)
    return best, "; ".join(why for why in (why_v2, why_v1) if why)


def next_group_name() -> str:
    return f"{os.getpid()}-{next(_counter)}"


def reap_groups(parent: Path) -> int:
    """Kill and remove the groups under `parent` whose gateway process is gone."""
    removed = 0
    for group in parent.iterdir() if parent.is_dir() else ():
        owner = group.name.split("-", 1)[0]
        if not group.is_dir() or not owner.isdigit() or _alive(int(owner)):
            continue
        kill_procs(group)
        try:
            group.rmdir()
            removed += 1
        except OSError as exc:
            log.warning("could not remove stale cgroup %s: %s", group, exc)
    return removed


def kill_procs(group: Path) -> int:
    try:
        pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
