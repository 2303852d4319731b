"""The cgroup v2 driver's decisions, on a directory tree laid out like cgroupfs.

The real thing runs in test_sandbox_nonroot.py::test_a_delegated_v2_group_enforces_everything
wherever cgroup v2 has the memory and pids controllers (it skips, saying so, on a hybrid
host whose controllers are bound to v1). This file pins down, on any host, which files
the driver reads and writes, and the reasons it gives.
"""

from __future__ import annotations

from pathlib import Path

from bot.sandbox import Limits
from bot.sandbox.cgroup_v2 import V2Group, V2Hierarchy

LIMITS = Limits(
    memory_mb=256, pids=64, cpu_seconds=2, wall_seconds=30, file_size_mb=10, nofile=256, cpus=0.5
)


def cgroup_dir(path: Path, controllers: str = "") -> Path:
    """What the kernel puts in every new v2 group (and, for `controllers`, its parent's)."""
    path.mkdir()
    (path / "cgroup.controllers").write_text(controllers + "\n")
    (path / "cgroup.subtree_control").write_text("\n")
    (path / "cgroup.procs").write_text("")
    return path


def test_v2_makes_per_command_groups_under_a_delegated_group(tmp_path: Path) -> None:
    top = cgroup_dir(tmp_path / "decapod.service", "cpuset cpu io memory pids")
    cgroup_dir(top / "decapod-sandbox", "cpu memory pids")
    hierarchy, why = V2Hierarchy.at(top, "decapod-sandbox")
    assert hierarchy is not None and why == ""
    assert hierarchy.version == "cgroup v2"
    assert hierarchy.controllers == ("memory", "pids", "cpu")
    assert (top / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    assert (top / "decapod-sandbox" / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"

    group = hierarchy.command_group()
    assert isinstance(group, V2Group)
    group.create(LIMITS)
    path = group.path
    assert path.parent == top / "decapod-sandbox"
    assert (path / "memory.max").read_text() == str(256 << 20)
    assert (path / "pids.max").read_text() == "64"
    assert (path / "cpu.max").read_text() == "50000 100000"
    assert group.procs_files == [path / "cgroup.procs"]  # one directory for all controllers
    assert all(group.enforces(c) for c in ("memory", "pids", "cpu"))

    assert not group.oom_killed()
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n")
    assert group.oom_killed()


def test_v2_says_which_controllers_it_lacks_and_why(tmp_path: Path) -> None:
    bare = cgroup_dir(tmp_path / "bare", "cpuset io hugetlb")
    hierarchy, why = V2Hierarchy.at(bare, "decapod-sandbox")
    assert hierarchy is None
    assert why == f"cgroup v2: {bare} offers none of memory, pids, cpu"

    partial = cgroup_dir(tmp_path / "partial", "memory pids")
    cgroup_dir(partial / "decapod-sandbox", "memory pids")
    hierarchy, why = V2Hierarchy.at(partial, "decapod-sandbox")
    assert hierarchy is not None and hierarchy.controllers == ("memory", "pids")
    assert why == f"cgroup v2: {partial} offers no cpu"

    missing = tmp_path / "not-a-cgroup"
    missing.mkdir()
    hierarchy, why = V2Hierarchy.at(missing, "decapod-sandbox")
    assert hierarchy is None and why.startswith(f"cgroup v2: {missing}: ")
