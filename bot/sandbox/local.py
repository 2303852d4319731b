"""Backends that run commands as local processes: bubblewrap, and the opt-in host mode.

bwrap profile: every namespace new (network = loopback only), uid 1000 inside a user
namespace, no capabilities, no environment but the allowlist, read-only /usr, fresh /proc,
/dev and /tmp, and only the session workspace writable at /work. Outside, when the gateway
is root, the launcher drops to the sandbox uid; a per-command cgroup (v2 delegated, or v1)
bounds memory, pids and CPU share where one can be had, and RLIMIT_NPROC set inside the
sandbox's user namespace bounds its processes everywhere (Linux 5.14 and later).
"""

from __future__ import annotations

import asyncio
import functools
import os
import platform
import re
import shutil
import tempfile
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path

from bot.errors import SandboxError
from bot.sandbox.backend import CommandBackend
from bot.sandbox.base import (
    WORK_DIR,
    ExecResult,
    Limits,
    Watchdog,
    Workspace,
    sandbox_env,
)
from bot.sandbox.cgroups import find_cgroups
from bot.sandbox.config import SandboxConfig
from bot.sandbox.enforcement import CPU_SHARE, MEMORY, PROCESSES, Enforcement
from bot.sandbox.process import (
    STAGED_WORKSPACE,
    HostTools,
    launch_prefix,
    nproc_prefix,
    run_tree,
)
from bot.sandbox.workspace import WorkspaceManager

_PROBE_TIMEOUT_S = 10.0
_TMP_BYTES = 64 << 20
_ETC_FILES = ("/etc/alternatives", "/etc/ssl", "/etc/ld.so.cache")
#: name resolution, for a server that may use the network
_NET_ETC_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf")
#: the kernel counts RLIMIT_NPROC per user namespace since this release
_NPROC_PER_USERNS = (5, 14)
_LIMIT_CONTROLLERS = {MEMORY: "memory", PROCESSES: "pids", CPU_SHARE: "cpu"}


class LocalBackend(CommandBackend):
    """Shared plumbing: cgroups, the uid switch and the launcher."""

    name = "local"

    def __init__(self, config: SandboxConfig, workspaces: WorkspaceManager) -> None:
        super().__init__(workspaces)
        self.tools = HostTools.find()
        # Switch to the sandbox uid when we are root (and can); otherwise run as ourselves.
        self.drop_to = (config.uid, config.gid) if os.geteuid() == 0 else None
        self.cgroups, self.cgroups_missing = find_cgroups(config.cgroup_parent)
        if self.cgroups is not None:
            self.cgroups.reap_orphans()

    async def destroy(self, session_key: str) -> None:
        await asyncio.to_thread(self.workspaces.rm, session_key)

    def describe(self) -> str:
        who = f"uid {self.drop_to[0]}" if self.drop_to else f"gateway uid {os.geteuid()}"
        return f"{who}; {self.enforcement.summary()}"

    @property
    def enforcement(self) -> Enforcement:
        by: dict[str, str] = {}
        missing: dict[str, str] = {}
        controllers = self.cgroups.controllers if self.cgroups is not None else ()
        for limit, controller in _LIMIT_CONTROLLERS.items():
            if self.cgroups is not None and controller in controllers:
                by[limit] = self.cgroups.version
            elif limit == PROCESSES and self.nproc_problem is None:
                by[limit] = "RLIMIT_NPROC in the sandbox's user namespace"
            elif limit == MEMORY:
                missing[limit] = "RLIMIT_AS bounds each process, not their sum"
            elif limit == PROCESSES:
                missing[limit] = self.nproc_problem or ""
            else:
                missing[limit] = ""
        cause = f"no usable cgroup ({self.cgroups_missing or 'none found'})"
        return Enforcement(by, missing, cause, self.quota.describe())

    @functools.cached_property
    def nproc_problem(self) -> str | None:
        """Why RLIMIT_NPROC cannot bound one command's processes here, or None if it can."""
        return "RLIMIT_NPROC would count every process of the host uid"

    @abstractmethod
    def _command(
        self, path: Path, argv: list[str], limits: Limits
    ) -> tuple[list[str], dict[str, str]]:
        """The argv after the launcher prefix, and the environment it starts with."""

    def _stages_workspace(self) -> bool:
        return False

    async def _run(
        self,
        ws: Workspace,
        argv: list[str],
        stdin: bytes | None,
        limits: Limits,
        wall_s: float,
        watchdog: Watchdog,
    ) -> ExecResult:
        return await self._run_in(ws.path, argv, stdin, limits, wall_s, watchdog)

    async def _run_in(
        self,
        path: Path,
        argv: list[str],
        stdin: bytes | None,
        limits: Limits,
        wall_s: float,
        watchdog: Watchdog | None,
    ) -> ExecResult:
        cgroup = self.cgroups.command_group() if self.cgroups is not None else None
        try:
            if cgroup is not None:
                try:
                    cgroup.create(limits)
                except OSError as exc:
                    raise SandboxError(f"could not create the command's cgroup: {exc}") from exc
            prefix = launch_prefix(
                self.tools,
                limits,
                cgroup,
                drop_to=self.drop_to,
                stage_workspace=self._stages_workspace(),
                uid_nproc=self._uid_nproc(),
            )
            command, env = self._command(path, argv, limits)
            return await run_tree(
                prefix + command,
                env=env,
                cwd=str(path),
                stdin=stdin,
                wall_s=wall_s,
                limits=limits,
                cgroup=cgroup,
                watchdog=watchdog,
            )
        finally:
            if cgroup is not None:
                await cgroup.remove()

    def _uid_nproc(self) -> bool:
        return False


class BwrapBackend(LocalBackend):
    name = "bwrap"

    def __init__(self, config: SandboxConfig, workspaces: WorkspaceManager, bwrap: str) -> None:
        super().__init__(config, workspaces)
        self.bwrap = bwrap
        self.version = "bubblewrap"

    @classmethod
    async def start(cls, config: SandboxConfig, workspaces: WorkspaceManager) -> BwrapBackend:
        """Find bwrap and prove the whole launcher works here, or raise with the reason."""
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxError("bwrap is not installed (apt-get install bubblewrap)")
        backend = cls(config, workspaces, bwrap)
        await backend._probe()
        return backend

    def describe(self) -> str:
        return f"bwrap ({self.version}): {super().describe()}"

    def _stages_workspace(self) -> bool:
        # bwrap running as the sandbox uid cannot search a root-only <home>
        return self.drop_to is not None

    @functools.cached_property
    def nproc_problem(self) -> str | None:
        match = re.match(r"(\d+)\.(\d+)", platform.release())
        kernel = (int(match[1]), int(match[2])) if match else (0, 0)
        if kernel < _NPROC_PER_USERNS:
            return (
                f"Linux {platform.release()} counts RLIMIT_NPROC per host uid, not per user "
                "namespace (5.14 and later do)"
            )
        prlimit = os.path.realpath(self.tools.prlimit)
        if not prlimit.startswith("/usr/"):
            return f"{prlimit} is outside /usr, so the sandbox cannot run it"
        return None

    def _command(
        self, path: Path, argv: list[str], limits: Limits
    ) -> tuple[list[str], dict[str, str]]:
        # the read-only mounts (/skills) are the exec sandbox's; an MCP server gets only the
        # binds its own config names
        mounts = [
            arg
            for dest, src in self.workspaces.ro_mounts.items()
            for arg in ("--ro-bind-try", str(src), dest)
        ]
        args = [*self._profile(path, extra=mounts), "--clearenv"]
        env = sandbox_env()
        for key, value in env.items():
            args += ["--setenv", key, value]
        return [*args, "--", *self._nproc_bounded(argv, limits)], env

    def server_command(
        self,
        path: Path,
        argv: list[str],
        limits: Limits,
        *,
        network: bool = False,
        ro_binds: Sequence[tuple[str, str]] = (),
        rw_binds: Sequence[tuple[str, str]] = (),
    ) -> list[str]:
        """The whole launcher argv for a long-lived server (an MCP server over stdio) in the
        exec profile, with `path` at /work and the (host, inside) binds. Its environment is
        the one the launcher starts with, so secret values never appear in an argv; no
        cgroup, the rlimits bound it."""
        prefix = launch_prefix(
            self.tools,
            limits,
            None,
            drop_to=self.drop_to,
            stage_workspace=self._stages_workspace(),
            uid_nproc=self._uid_nproc(),
        )
        extra: list[str] = []
        for source, dest in ro_binds:
            extra += ["--ro-bind", source, dest]
        for source, dest in rw_binds:
            extra += ["--bind", source, dest]
        profile = self._profile(path, network=network, extra=extra)
        return [*prefix, *profile, "--", *self._nproc_bounded(argv, limits)]

    def _nproc_bounded(self, argv: list[str], limits: Limits) -> list[str]:
        if self.nproc_problem is None:
            return nproc_prefix(self.tools, limits) + argv
        return argv

    def _profile(
        self, path: Path, *, network: bool = False, extra: Sequence[str] = ()
    ) -> list[str]:
        source = STAGED_WORKSPACE if self._stages_workspace() else str(path)
        args = [
            self.bwrap,
            "--unshare-all",
            *(["--share-net"] if network else []),
            "--unshare-user",
            "--disable-userns",  # no nested user namespaces: the kernel surface they open
            "--uid", "1000",
            "--gid", "1000",
            "--die-with-parent",
            "--new-session",
            "--cap-drop", "ALL",
            "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/bin", "/bin",
            "--symlink", "usr/sbin", "/sbin",
            "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/lib64", "/lib64",
        ]  # fmt: skip
        for etc in _ETC_FILES + (_NET_ETC_FILES if network else ()):
            args += ["--ro-bind-try", etc, etc]
        args += [
            "--proc", "/proc",
            "--dev", "/dev",
            "--size", str(_TMP_BYTES), "--tmpfs", "/tmp",
            "--bind", source, WORK_DIR,
            *extra,
            "--remount-ro", "/",  # the root tmpfs bwrap builds is writable otherwise
            "--chdir", WORK_DIR,
        ]  # fmt: skip
        return args

    async def _probe(self) -> None:
        self.workspaces.ensure_root()
        probe_dir = Path(tempfile.mkdtemp(prefix=".probe-", dir=self.workspaces.root))
        try:
            if self.drop_to is not None:
                os.chown(probe_dir, *self.drop_to)
            limits = Limits(256, 32, 5, _PROBE_TIMEOUT_S, 1, 64)
            # both at once: each is mostly the wait for a process to start and end
            result, version = await asyncio.gather(
                self._run_in(probe_dir, ["true"], None, limits, _PROBE_TIMEOUT_S, watchdog=None),
                run_tree(
                    [self.bwrap, "--version"],
                    env=sandbox_env(),
                    cwd="/",
                    stdin=None,
                    wall_s=_PROBE_TIMEOUT_S,
                    limits=limits,
                    cgroup=None,
                ),
            )
        finally:
            shutil.rmtree(probe_dir, ignore_errors=True)
        if result.exit_code != 0:
            detail = result.stderr.decode(errors="replace").strip()[-300:]
            raise SandboxError(
                f"bwrap probe failed (exit {result.exit_code}: {detail or 'no output'}); "
                "unprivileged user namespaces may be disabled or restricted by AppArmor "
                "(Ubuntu 24.04: kernel.apparmor_restrict_unprivileged_userns)"
            )
        self.version = version.stdout.decode(errors="replace").strip() or self.version


class HostBackend(LocalBackend):
    """UNSAFE: runs commands on the host in the workspace directory, with no isolation
    beyond rlimits, a cgroup and (as root) the sandbox uid. Owner DMs only."""

    name = "host"

    @classmethod
    async def start(cls, config: SandboxConfig, workspaces: WorkspaceManager) -> HostBackend:
        return cls(config, workspaces)

    def describe(self) -> str:
        return f"host (UNSAFE, no sandbox; owner DMs only): {super().describe()}"

    def _uid_nproc(self) -> bool:
        # a backstop shared by every process of the sandbox uid; never the gateway's own uid
        return self.drop_to is not None

    def _command(
        self, path: Path, argv: list[str], limits: Limits
    ) -> tuple[list[str], dict[str, str]]:
        return argv, sandbox_env(home=str(path))
