"""cgroup v1: one group per controller at `/sys/fs/cgroup/<controller>/<parent>/<name>`.

Usable as root, or by a non-root gateway once an administrator has made `<parent>` under
each controller and chowned it to the gateway's user (v1 checks plain file permissions,
and moving a task needs only the same uid). systemd never delegates v1 controllers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bot.sandbox.base import Limits
from bot.sandbox.cgroups import (
    CFS_PERIOD_US,
    CGROUP_ROOT,
    CONTROLLERS,
    CommandCgroup,
    next_group_name,
    reap_groups,
)


@dataclass(frozen=True, slots=True)
class V1Hierarchy:
    parents: dict[str, Path]
    version: str = "cgroup v1"

    @property
    def controllers(self) -> tuple[str, ...]:
        return tuple(self.parents)

    @classmethod
    def find(cls, parent: str, root: Path = CGROUP_ROOT) -> tuple[V1Hierarchy | None, str]:
        """The controllers we can make per-command groups in, and why not the others."""
        parents: dict[str, Path] = {}
        unmounted: list[str] = []
        unwritable: list[str] = []
        for name in CONTROLLERS:
            base = root / name
            if not (base / "cgroup.procs").exists():
                unmounted.append(name)
                continue
            try:
                (base / parent).mkdir(exist_ok=True)
            except OSError:
                pass
            # an existing parent (made by an earlier root run) proves nothing about us
            if os.access(base / parent, os.W_OK | os.X_OK):
                parents[name] = base / parent
            else:
                unwritable.append(name)
        problems = [f"{', '.join(unmounted)} not mounted"] if unmounted else []
        if unwritable:
            where = root / f"{{{','.join(unwritable)}}}" / parent
            problems.append(f"{where} not writable by uid {os.geteuid()}")
        why = f"cgroup v1: {'; '.join(problems)}" if problems else ""
        return (cls(parents) if parents else None), why

    def command_group(self) -> CommandCgroup:
        name = next_group_name()
        return V1Group({c: path / name for c, path in self.parents.items()})

    def reap_orphans(self) -> int:
        return sum(reap_groups(path) for path in self.parents.values())


class V1Group(CommandCgroup):
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
                (path / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(str(int(limits.cpus * CFS_PERIOD_US)))

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
