"""Run one local process tree with rlimits, a cgroup, capped output and watchdogs (the
wall clock, the workspace quota).

The launcher is a chain of execs, so the pid the gateway sees is the whole chain:

    [unshare --mount] [sh -c 'join cgroups; stage workspace; exec "$@"']
        setpriv [--reuid --regid --clear-groups] --no-new-privs  prlimit ...  <command>

bwrap's command then starts with `prlimit --nproc` inside the sandbox: see `nproc_prefix`.

No `preexec_fn`: it is unsafe in a process with threads, and the gateway has some.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import time
from dataclasses import dataclass

from bot.errors import SandboxError
from bot.sandbox.base import (
    CappedBuffer,
    ExecResult,
    Limits,
    Watchdog,
    command_result,
    supervise,
)
from bot.sandbox.cgroups import CommandCgroup

#: where a root launcher stages the workspace for bwrap, in its own mount namespace. Not under
#: /tmp: the tmpfs that makes the mount point would hide the host's /tmp, and with it any
#: path under /tmp that bwrap is asked to bind (a checkout or virtualenv an MCP server runs
#: from). /dev/shm is on every Linux host and never a bind source.
STAGED_WORKSPACE = "/dev/shm/decapod-work"
#: when a cgroup enforces memory and pids exactly, the per-process RLIMIT_AS and the per-uid
#: RLIMIT_NPROC become backstops: runtimes reserve address space they never touch, and
#: every concurrent command shares the one sandbox uid
_BACKSTOP_FACTOR = 4
_DRAIN_GRACE_S = 1.0


@dataclass(frozen=True, slots=True)
class HostTools:
    """Absolute paths of the util-linux helpers the launcher chains through."""

    setpriv: str
    prlimit: str
    unshare: str

    @classmethod
    def find(cls) -> HostTools:
        paths = {name: shutil.which(name) for name in ("setpriv", "prlimit", "unshare")}
        missing = [name for name, path in paths.items() if path is None]
        if missing:
            raise SandboxError(f"missing util-linux tools: {', '.join(missing)}")
        return cls(**{k: v for k, v in paths.items() if v is not None})


def launch_prefix(
    tools: HostTools,
    limits: Limits,
    cgroup: CommandCgroup | None,
    *,
    drop_to: tuple[int, int] | None,
    stage_workspace: bool,
    uid_nproc: bool,
) -> list[str]:
    """The argv that puts the command in its cgroup, drops privileges and applies rlimits.

    With `stage_workspace`, the launcher's cwd (the workspace) is bound at STAGED_WORKSPACE.
    `uid_nproc` sets RLIMIT_NPROC here, where it counts every process of the host uid.
    """
    steps = [f"echo $$ > {shlex.quote(str(p))}" for p in cgroup.procs_files] if cgroup else []
    if stage_workspace:
        steps += [
            "mount -t tmpfs -o size=16k,mode=0755 decapod-sandbox /dev/shm",
            f"mkdir {STAGED_WORKSPACE}",
            # /proc/self/cwd, not a path: the gateway's home need not be searchable
            f"mount --no-canonicalize --bind /proc/self/cwd {STAGED_WORKSPACE}",
        ]
    prefix: list[str] = []
    if stage_workspace:
        prefix += [tools.unshare, "--mount", "--propagation", "private", "--"]
    if steps:
        prefix += ["/bin/sh", "-c", "set -e; " + "; ".join(steps) + '; exec "$@"', "sh"]
    prefix.append(tools.setpriv)
    if drop_to is not None:
        prefix += [f"--reuid={drop_to[0]}", f"--regid={drop_to[1]}", "--clear-groups"]
    prefix += ["--no-new-privs", "--"]
    return prefix + rlimit_args(tools, limits, cgroup, nproc=uid_nproc)


def nproc_prefix(tools: HostTools, limits: Limits) -> list[str]:
    """RLIMIT_NPROC set inside the sandbox's own user namespace.

    Since Linux 5.14 the kernel counts processes per (user namespace, uid) and checks the
    limit of the namespace the process runs in, so a limit set after bwrap made the
    namespace counts this command's processes only: not the gateway's, nor another
    sandbox's, though they all map to one host uid. Set before bwrap, the same limit would
    also become the cap of the whole host uid (the kernel copies it into the namespace it
    creates) and fail bwrap itself.
    """
    return [tools.prlimit, f"--nproc={limits.pids}", "--"]


def rlimit_args(
    tools: HostTools, limits: Limits, cgroup: CommandCgroup | None, *, nproc: bool
) -> list[str]:
    exact_memory = cgroup is not None and cgroup.enforces("memory")
    exact_pids = cgroup is not None and cgroup.enforces("pids")
    address_space = limits.memory_mb * (_BACKSTOP_FACTOR if exact_memory else 1)
    args = [
        tools.prlimit,
        f"--as={address_space << 20}",
        # soft limit sends SIGXCPU, the hard one a second later SIGKILL
        f"--cpu={limits.cpu_seconds}:{limits.cpu_seconds + 1}",
        f"--fsize={limits.file_size_mb << 20}",
        f"--nofile={limits.nofile}",
    ]
    if nproc:  # counts every process of the uid, host-wide: only for the host backend
        args.append(f"--nproc={limits.pids * (_BACKSTOP_FACTOR if exact_pids else 1)}")
    return [*args, "--"]


async def run_tree(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: str,
    stdin: bytes | None,
    wall_s: float,
    limits: Limits,
    cgroup: CommandCgroup | None,
    watchdog: Watchdog | None = None,
) -> ExecResult:
    """Run argv in a new session; on exit, timeout, watchdog or cancel, kill the whole tree."""
    start = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        raise SandboxError(f"could not start {argv[0]}: {exc}") from exc
    assert proc.stdout is not None and proc.stderr is not None
    out, err = CappedBuffer(limits.output_bytes), CappedBuffer(limits.output_bytes)
    pumps = [
        asyncio.create_task(_drain(proc.stdout, out)),
        asyncio.create_task(_drain(proc.stderr, err)),
    ]
    if stdin is not None and proc.stdin is not None:
        pumps.append(asyncio.create_task(_feed(proc.stdin, stdin)))
    exited = asyncio.ensure_future(proc.wait())
    try:
        stop = await supervise(exited, wall_s, watchdog)
    finally:
        # Whatever happened, nothing the command started may outlive it.
        _kill_tree(proc.pid, cgroup)
        await _reap(proc, pumps)
        await exited
    code = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    exit_code = 128 - code if code < 0 else code
    oom = cgroup is not None and cgroup.oom_killed()
    return command_result(exit_code, out, err, limits, started=start, stop=stop, oom_killed=oom)


def _kill_tree(pgid: int, cgroup: CommandCgroup | None) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    if cgroup is not None:  # also catches anything that left the process group
        cgroup.kill_all()


async def _reap(proc: asyncio.subprocess.Process, pumps: list[asyncio.Task[None]]) -> None:
    await proc.wait()
    # A descendant that escaped the group may hold a pipe open; don't wait on it forever.
    _done, pending = await asyncio.wait(pumps, timeout=_DRAIN_GRACE_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)


async def _drain(stream: asyncio.StreamReader, sink: CappedBuffer) -> None:
    # Keep reading past the cap: a writer blocked on a full pipe would never finish.
    while chunk := await stream.read(65536):
        sink.feed(chunk)


async def _feed(stream: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stream.write(data)
        await stream.drain()
    stream.close()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await stream.wait_closed()
