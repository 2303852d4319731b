"""How a stdio server is launched: on the host, or through the sandbox's bwrap launcher.

Either way the server's environment is exactly a minimal PATH, HOME (its folder), LANG, TZ
and the variables its entry names. The values travel in the launcher's environment, never
in an argv, where any local user could read them in /proc. The SDK adds a few login
variables (USER, LOGNAME, SHELL, TERM) to every server it starts; `env -u` removes them
again before the server runs.

Each server has its own folder, HOME/mcp/<name>: its HOME and working folder on the host,
its /work in the sandbox. Its stderr goes, line by line and redacted, to the gateway's log,
and the last lines explain a failed start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from bot.mcp.config import StdioServerConfig, split_bind
from bot.sandbox.base import SANDBOX_PATH, Limits, sandbox_env
from bot.tasks import cancel_and_wait

if TYPE_CHECKING:
    from bot.sandbox.local import BwrapBackend

log = logging.getLogger("decapod.mcp")

#: a server lives as long as the gateway, so RLIMIT_CPU (CPU seconds over a whole life)
#: cannot bound it; memory, files and processes are bounded as for commands
_NO_CPU_LIMIT_S = 10**9
_TAIL_LINES = 5
_MAX_LINE = 2000


@dataclass(frozen=True, slots=True)
class StdioLaunch:
    command: str
    args: list[str]
    env: dict[str, str]
    cwd: str


def server_folder(home: Path, name: str, owner: tuple[int, int] | None = None) -> Path:
    folder = home / "mcp" / name
    for private in (folder.parent, folder):
        private.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(private, 0o700)
    if owner is not None:
        os.chown(folder, *owner)
    return folder


def stdio_launch(
    entry: StdioServerConfig,
    folder: Path,
    values: dict[str, str],
    *,
    sandbox: BwrapBackend | None,
    limits: Limits | None = None,
) -> StdioLaunch:
    """The process to start for `entry`, with `values` (the named variables) in its
    environment. `sandbox` is required when the entry runs in the sandbox."""
    argv = [entry.command, *entry.args]
    if entry.run_in_sandbox:
        if sandbox is None:
            raise ValueError("a sandboxed server needs the bwrap backend")
        assert limits is not None
        argv = sandbox.server_command(
            folder,
            argv,
            limits,
            network=entry.network,
            ro_binds=[split_bind(b) for b in entry.ro_binds],
            rw_binds=[split_bind(b) for b in entry.rw_binds],
        )
        env = sandbox_env() | values
        cwd = str(folder)
    else:
        env = sandbox_env(home=str(folder)) | values
        cwd = entry.cwd or str(folder)
    unset = sorted(_sdk_added_names() - set(env))
    if unset:
        env_tool = shutil.which("env", path=SANDBOX_PATH) or "/usr/bin/env"
        argv = [env_tool, *(arg for name in unset for arg in ("-u", name)), "--", *argv]
    return StdioLaunch(argv[0], argv[1:], env, cwd)


def server_limits(memory_mb: int, pids: int, file_size_mb: int, nofile: int) -> Limits:
    return Limits(
        memory_mb=memory_mb,
        pids=pids,
        cpu_seconds=_NO_CPU_LIMIT_S,
        wall_seconds=float(_NO_CPU_LIMIT_S),
        file_size_mb=file_size_mb,
        nofile=nofile,
    )


def _sdk_added_names() -> set[str]:
    from mcp.client.stdio import get_default_environment

    return set(get_default_environment())


class StderrPump:
    """A pipe for one server process's stderr, read into the log (redacted) line by line."""

    def __init__(self, server: str, redact: Callable[[str], str], tail: deque[str]) -> None:
        self.server = server
        self.redact = redact
        self.tail = tail
        read_fd, write_fd = os.pipe()
        self.writer: TextIO = os.fdopen(write_fd, "w")
        self._reader = os.fdopen(read_fd, "rb", buffering=0)
        self._task = asyncio.create_task(self._pump(), name=f"mcp-stderr-{server}")

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), self._reader
        )
        pending = b""
        try:
            while chunk := await reader.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._line(line)
                pending = pending[-_MAX_LINE:]
            if pending:
                self._line(pending)
        finally:
            transport.close()

    def _line(self, raw: bytes) -> None:
        text = self.redact(raw[:_MAX_LINE].decode(errors="replace").rstrip())
        if text:
            self.tail.append(text)
            log.info("mcp server %s: %s", self.server, text)

    async def aclose(self) -> None:
        """After the process is gone: close our end and read what is left (bounded, since a
        child the server left behind may still hold the pipe)."""
        self.writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), 1.0)
        with contextlib.suppress(OSError):
            await cancel_and_wait(self._task)


def new_tail() -> deque[str]:
    return deque(maxlen=_TAIL_LINES)
