"""The SandboxBackend seam and the value types every backend shares."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from bot.errors import SandboxError
from bot.tasks import cancel_and_wait

if TYPE_CHECKING:
    from bot.sandbox.enforcement import Enforcement

T = TypeVar("T")

#: the only environment a sandboxed command sees; provider keys and tokens never enter
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
WORK_DIR = "/work"


def sandbox_env(home: str = WORK_DIR) -> dict[str, str]:
    return {"PATH": SANDBOX_PATH, "HOME": home, "LANG": "C.UTF-8", "TZ": "UTC"}


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-command limits. `wall_seconds` caps whatever timeout a caller asks for."""

    memory_mb: int
    pids: int
    cpu_seconds: int
    wall_seconds: float
    file_size_mb: int
    nofile: int
    output_bytes: int = 65536
    #: CPU share (cgroup quota / docker nano_cpus); 1.0 is one core
    cpus: float = 1.0


@dataclass(frozen=True, slots=True)
class ExecResult:
    """What one command did. Output beyond `Limits.output_bytes` is dropped, and flagged."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool
    truncated_stdout: bool
    truncated_stderr: bool
    duration_s: float
    #: why the sandbox stopped the command early (timeout, memory, CPU time), if it did
    killed_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Workspace:
    """A session's directory on the host; inside the sandbox it is /work."""

    session_key: str
    hash: str
    path: Path
    created: float
    last_used: float


#: a check that runs beside a command and returns, saying why, only when the command
#: must be stopped (the workspace quota's watch)
Watchdog = Callable[[], Coroutine[Any, Any, str]]


class SandboxBackend(Protocol):
    name: str

    @property
    def enforcement(self) -> Enforcement: ...

    def describe(self) -> str: ...

    async def prepare(self, session_key: str) -> Workspace: ...

    async def exec(
        self,
        session_key: str,
        argv: list[str],
        *,
        stdin: bytes | None,
        limits: Limits,
        timeout: float,  # noqa: ASYNC109 (wall-clock limit, enforced by the backend)
    ) -> ExecResult: ...

    async def destroy(self, session_key: str) -> None: ...

    async def aclose(self) -> None: ...


class CappedBuffer:
    """Keeps the first `cap` bytes of a stream and counts the rest."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.total = 0
        self._data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap - len(self._data)
        if room > 0:
            self._data += chunk[:room]

    @property
    def data(self) -> bytes:
        return bytes(self._data)

    @property
    def truncated(self) -> bool:
        return self.total > self.cap


class InflightCommands:
    """The commands a backend is running, so `aclose` can stop them all.

    Each command runs in its own task; a caller that is cancelled cancels it (awaiting a
    task propagates cancellation), and the command's cleanup then kills its process tree.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.closed:
            coro.close()
            raise SandboxError("the sandbox is shut down")
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            raise SandboxError("the sandbox was shut down while the command ran") from None

    async def close(self) -> None:
        """Refuse new commands, and stop the running ones (their cleanup kills them)."""
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def signal_exit_reason(exit_code: int, limits: Limits) -> str | None:
    """Name the limit behind a shell-style 128+N exit code, when one plausibly is."""
    if exit_code == 128 + 24:  # SIGXCPU: the soft RLIMIT_CPU
        return f"CPU time limit ({limits.cpu_seconds}s)"
    if exit_code == 128 + 25:  # SIGXFSZ: RLIMIT_FSIZE
        return f"file size limit ({limits.file_size_mb} MiB)"
    return None


@dataclass(frozen=True, slots=True)
class Stop:
    """Why a command was stopped before it finished."""

    reason: str
    timed_out: bool


async def supervise(
    finished: asyncio.Future[Any], wall_s: float, watchdog: Watchdog | None
) -> Stop | None:
    """Wait until `finished` is done (it is never cancelled here), the wall-clock limit
    passes, or the watchdog returns; None means the command finished by itself."""
    waiting: set[asyncio.Future[Any]] = {finished}
    guard = asyncio.ensure_future(watchdog()) if watchdog is not None else None
    if guard is not None:
        waiting.add(guard)
    try:
        done, _ = await asyncio.wait(waiting, timeout=wall_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if guard is not None and not guard.done():
            # waits out the watchdog's own cleanup, even when the command is cancelled again
            await cancel_and_wait(guard)
    if finished in done:
        if guard is not None and guard.done() and not guard.cancelled():
            guard.exception()  # retrieved: a verdict that came too late is moot
        return None
    if guard is not None and guard in done:
        return Stop(guard.result(), timed_out=False)  # a failing watchdog raises here
    return Stop(f"wall-clock timeout ({wall_s:g}s)", timed_out=True)


def command_result(
    exit_code: int,
    out: CappedBuffer,
    err: CappedBuffer,
    limits: Limits,
    *,
    started: float,
    stop: Stop | None,
    oom_killed: bool,
) -> ExecResult:
    """The result of a finished command, naming the limit that ended it, if one did."""
    if stop is not None:
        reason: str | None = stop.reason
    elif oom_killed:
        reason = f"memory limit ({limits.memory_mb} MiB)"
    else:
        reason = signal_exit_reason(exit_code, limits)
    return ExecResult(
        exit_code=exit_code,
        stdout=out.data,
        stderr=err.data,
        timed_out=stop is not None and stop.timed_out,
        truncated_stdout=out.truncated,
        truncated_stderr=err.truncated,
        duration_s=time.monotonic() - started,
        killed_reason=reason,
    )
