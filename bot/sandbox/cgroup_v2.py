"""cgroup v2: each command's group is `<top>/<parent>/<gateway pid>-<n>`.

`top` is the gateway's own group when that group is delegated to it: a non-root gateway
whose group it may write (systemd `Delegate=yes` chowns the unit's group to the service
user), or a root gateway whose group systemd marked delegated (`trusted.delegate`). A root
gateway outside any delegation uses the hierarchy's root (a container's own group, inside
a cgroup namespace), as docker's cgroupfs driver does; it never writes into a group that
systemd manages for someone else.

A v2 group can hand controllers to its children only while it holds no process itself
(the "no internal processes" rule). When `top` holds the gateway, the gateway therefore
first moves itself into the leaf `<top>/<parent>-gateway`, then enables the controllers.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from bot.sandbox.base import Limits
from bot.sandbox.cgroups import (
    CFS_PERIOD_US,
    CONTROLLERS,
    CommandCgroup,
    next_group_name,
    reap_groups,
)

_DELEGATE_XATTRS = ("trusted.delegate", "user.delegate")


@dataclass(frozen=True, slots=True)
class V2Hierarchy:
    base: Path
    controllers: tuple[str, ...]
    version: str = "cgroup v2"

    @classmethod
    def find(cls, parent: str) -> tuple[V2Hierarchy | None, str]:
        located = _locate()
        if located is None:
            return None, "cgroup v2: not mounted"
        mount, own = located
        top = mount if os.geteuid() == 0 and not _marked_delegated(own) else own
        return cls.at(top, parent)

    @classmethod
    def at(cls, top: Path, parent: str) -> tuple[V2Hierarchy | None, str]:
        """Set up `<top>/<parent>` for per-command groups, or say why it cannot be."""
        try:
            offered = (top / "cgroup.controllers").read_text().split()
        except OSError as exc:
            return None, f"cgroup v2: {top}: {exc.strerror or exc}"
        usable = tuple(c for c in CONTROLLERS if c in offered)
        if not usable:
            return None, f"cgroup v2: {top} offers none of {', '.join(CONTROLLERS)}"
        if not _writable(top):
            return None, (
                f"cgroup v2: {top} is not delegated to uid {os.geteuid()} "
                "(systemd: Delegate=yes in the unit)"
            )
        try:
            _enable(top, usable, leaf=top / f"{parent}-gateway")
            base = top / parent
            base.mkdir(exist_ok=True)
            _enable(base, usable, leaf=None)
        except OSError as exc:
            busy = " (other processes share it)" if exc.errno == errno.EBUSY else ""
            return None, (
                f"cgroup v2: could not enable {', '.join(usable)} for children of {top}"
                f"{busy}: {exc.strerror or exc}"
            )
        missing = [c for c in CONTROLLERS if c not in usable]
        why = f"cgroup v2: {top} offers no {', '.join(missing)}" if missing else ""
        return cls(base, usable), why

    def command_group(self) -> CommandCgroup:
        path = self.base / next_group_name()
        return V2Group(dict.fromkeys(self.controllers, path))

    def reap_orphans(self) -> int:
        return reap_groups(self.base)


class V2Group(CommandCgroup):
    @property
    def path(self) -> Path:
        return next(iter(self.dirs.values()))

    def create(self, limits: Limits) -> None:
        path = self.path
        path.mkdir()
        if "memory" in self.dirs:
            (path / "memory.max").write_text(str(limits.memory_mb << 20))
            if (path / "memory.swap.max").exists():  # no swap either (absent: no swap accounting)
                (path / "memory.swap.max").write_text("0")
        if "pids" in self.dirs:
            (path / "pids.max").write_text(str(limits.pids))
        if "cpu" in self.dirs:
            quota = max(1000, int(limits.cpus * CFS_PERIOD_US))
            (path / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}")

    def kill_all(self) -> None:
        kill_file = self.path / "cgroup.kill"  # Linux 5.14: kills the group atomically
        if kill_file.exists():
            try:
                kill_file.write_text("1")
            except OSError:
                pass
        super().kill_all()

    def oom_killed(self) -> bool:
        if "memory" not in self.dirs:
            return False
        try:
            for line in (self.path / "memory.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value) > 0
        except (OSError, ValueError):
            pass
        return False


def _locate() -> tuple[Path, Path] | None:
    """The cgroup2 mount point and the gateway's own group under it."""
    try:
        own = next(
            line[3:].strip()
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        )
        mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    except (OSError, StopIteration):
        return None
    for line in mountinfo:
        fields, _, fs = line.partition(" - ")
        if fs.split(" ", 1)[0] != "cgroup2":
            continue
        parts = fields.split()
        root, mount = _unescape(parts[3]), Path(_unescape(parts[4]))
        if own == root or own.startswith(root.rstrip("/") + "/"):
            return mount, mount / own[len(root) :].lstrip("/")
    return None


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal
    return field.encode().decode("unicode_escape") if "\\" in field else field


def _marked_delegated(group: Path) -> bool:
    for name in _DELEGATE_XATTRS:
        try:
            if os.getxattr(group, name) == b"1":
                return True
        except OSError:
            continue
    return False


def _writable(group: Path) -> bool:
    return os.access(group, os.W_OK | os.X_OK) and all(
        os.access(group / name, os.W_OK) for name in ("cgroup.procs", "cgroup.subtree_control")
    )


def _enable(group: Path, controllers: tuple[str, ...], *, leaf: Path | None) -> None:
    """Turn `controllers` on for the children of `group`; with `leaf`, move the gateway
    into it first if `group` may not have processes and children with controllers."""
    control = group / "cgroup.subtree_control"
    if set(controllers) <= set(control.read_text().split()):
        return
    wanted = " ".join(f"+{c}" for c in controllers)
    try:
        control.write_text(wanted)
    except OSError as exc:
        if exc.errno != errno.EBUSY or leaf is None:
            raise
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
        control.write_text(wanted)
