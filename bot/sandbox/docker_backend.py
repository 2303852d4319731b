"""Docker backend: one short-lived container per command (see docs/sandbox.md for why).

Each container: no network, read-only root, tmpfs /tmp, the session workspace at /work,
no capabilities, no-new-privileges, a non-root user, pids/memory/CPU limits, rlimits for
CPU time, file size and open files, and labels naming the gateway and the session so a
restarted gateway can remove what a crashed one left behind. `exec_run` has no timeout and
`wait(timeout)` only stops waiting, so a host-side watchdog kills the container instead.

The SDK is blocking; every call runs on this backend's own thread pool, never the loop's
default executor, so a slow daemon cannot starve the rest of the gateway. The start (version,
limits, image, orphans) talks to the daemon's socket directly (docker_api.py): the SDK is
loaded by the first command, after the gateway is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from bot.errors import SandboxError
from bot.sandbox.backend import CommandBackend
from bot.sandbox.base import (
    WORK_DIR,
    CappedBuffer,
    ExecResult,
    Limits,
    Stop,
    Watchdog,
    Workspace,
    command_result,
    sandbox_env,
    supervise,
)
from bot.sandbox.config import SandboxConfig
from bot.sandbox.docker_api import DaemonApi, DaemonError, socket_path
from bot.sandbox.enforcement import CPU_SHARE, MEMORY, PROCESSES, Enforcement
from bot.sandbox.workspace import WorkspaceManager

T = TypeVar("T")
log = logging.getLogger("decapod.sandbox")

LABEL_GATEWAY = "decapod.sandbox"
LABEL_SESSION = "decapod.session"
_TMPFS = "rw,nosuid,nodev,size=64m,mode=1777"
_API_TIMEOUT_S = 60
_MAX_THREADS = 32
#: `docker info` flags that say the daemon can apply each limit
_INFO_FLAGS = {MEMORY: "MemoryLimit", PROCESSES: "PidsLimit", CPU_SHARE: "CpuCfsQuota"}


class DockerBackend(CommandBackend):
    name = "docker"

    def __init__(
        self,
        config: SandboxConfig,
        workspaces: WorkspaceManager,
        pool: ThreadPoolExecutor,
        api: DaemonApi | None,
    ) -> None:
        super().__init__(workspaces)
        self.config = config
        self._pool = pool
        #: the daemon's own API over its unix socket (start, reaping); None for tcp://
        self._api = api
        #: the docker SDK and its client, loaded by the first command (see _sdk)
        self._client: Any = None
        self._docker: Any = None
        self._sdk_lock = threading.Lock()
        # Labels carry a digest of the workspace root, so two gateways on one host
        # never reap each other's containers.
        self.instance = hashlib.sha256(str(workspaces.root.resolve()).encode()).hexdigest()[:16]
        owner = workspaces.owner or (os.geteuid(), os.getegid())
        self.user = f"{owner[0]}:{owner[1]}"
        self.server_version = "unknown"
        self._info: dict[str, Any] = {}

    @classmethod
    async def start(cls, config: SandboxConfig, workspaces: WorkspaceManager) -> DockerBackend:
        """Connect, check the image, reap orphans; raise SandboxError with the reason."""
        if importlib.util.find_spec("docker") is None:  # the SDK is optional: decapod[sandbox]
            raise SandboxError("the docker package is not installed")
        pool = ThreadPoolExecutor(_MAX_THREADS, thread_name_prefix="decapod-docker")
        loop = asyncio.get_running_loop()
        if (unreachable := await loop.run_in_executor(pool, unix_socket_problem)) is not None:
            pool.shutdown(wait=False)
            raise SandboxError(f"no Docker daemon answers ({unreachable})")
        path = socket_path()
        backend = cls(config, workspaces, pool, DaemonApi(path, _API_TIMEOUT_S) if path else None)
        try:
            version, backend._info, has_image = await backend._call(backend._probe)
            backend.server_version = str(version.get("Version", "unknown"))
            if not has_image:
                raise SandboxError(
                    f"image {config.docker_image} is not present "
                    "(build it with .ci/sandbox-setup.sh, or docker pull a pinned image)"
                )
            await backend._call(backend._remove_labelled, {LABEL_GATEWAY: backend.instance})
        except Exception as exc:
            await backend._close_client()
            if isinstance(exc, SandboxError):
                raise
            if not backend._daemon_error(exc):
                raise
            raise SandboxError(f"the Docker daemon failed ({_short(exc)})") from None
        return backend

    def _sdk(self) -> tuple[Any, Any]:
        """The docker SDK's client and module, made on first use (on the pool's thread)."""
        with self._sdk_lock:
            if self._client is None:
                import docker

                try:
                    self._client = docker.from_env(timeout=_API_TIMEOUT_S)
                except docker.errors.DockerException as exc:
                    raise SandboxError(f"no Docker daemon answers ({_short(exc)})") from None
                self._docker = docker
        return self._client, self._docker

    def _daemon_error(self, exc: BaseException) -> bool:
        """An error of the daemon or of the way to it (requests' OSError: it is gone)."""
        if isinstance(exc, DaemonError | OSError):
            return True
        return self._docker is not None and isinstance(exc, self._docker.errors.DockerException)

    def _probe(self) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """(version, info, whether the image is present)."""
        image = self.config.docker_image
        if self._api is not None:
            return self._api.version(), self._api.info(), self._api.has_image(image)
        client, docker = self._sdk()
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            return client.version(), client.info(), False
        return client.version(), client.info(), True

    def describe(self) -> str:
        return (
            f"docker {self.server_version}: image {self.config.docker_image}, "
            f"user {self.user}, one container per command; {self.enforcement.summary()}"
        )

    @property
    def enforcement(self) -> Enforcement:
        by: dict[str, str] = {}
        missing: dict[str, str] = {}
        for limit, flag in _INFO_FLAGS.items():
            if self._info.get(flag, True):  # an older daemon that does not say: it can
                by[limit] = "docker"
            else:
                missing[limit] = f"{flag}: false"
        cause = "the Docker daemon cannot apply them (see `docker info`)"
        return Enforcement(by, missing, cause, self.quota.describe())

    async def destroy(self, session_key: str) -> None:
        h = self.workspaces.hash_for(session_key)
        await self._call(self._remove_labelled, {LABEL_GATEWAY: self.instance, LABEL_SESSION: h})
        await asyncio.to_thread(self.workspaces.rm, session_key)

    async def aclose(self) -> None:
        if self._inflight.closed:
            return
        await super().aclose()
        try:
            await self._call(self._remove_labelled, {LABEL_GATEWAY: self.instance})
        except Exception as exc:
            if not self._daemon_error(exc):
                raise
            # the daemon gone: a stop must still finish
            log.warning("could not remove the containers (reaped at the next start): %s", exc)
        await self._close_client()

    async def _close_client(self) -> None:
        if self._client is not None:
            await self._call(self._client.close)
        self._pool.shutdown(wait=False)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _run(
        self,
        ws: Workspace,
        argv: list[str],
        stdin: bytes | None,
        limits: Limits,
        wall_s: float,
        watchdog: Watchdog,
    ) -> ExecResult:
        start = time.monotonic()
        client, docker = await self._call(self._sdk)
        api, errors = client.api, docker.errors
        try:
            cid = await self._call(self._create, ws, argv, stdin is not None, limits)
        except (errors.DockerException, OSError) as exc:  # OSError: requests', no daemon
            raise SandboxError(f"could not create the container: {_short(exc)}") from None
        out, err = CappedBuffer(limits.output_bytes), CappedBuffer(limits.output_bytes)
        sock: Any = None
        pumps: list[asyncio.Future[None]] = []
        stop: Stop | None = None
        try:
            params = {"stdin": int(stdin is not None), "stdout": 1, "stderr": 1, "stream": 1}
            sock = await self._call(api.attach_socket, cid, params)
            await self._call(api.start, cid)  # a missing executable is tini's exit 127
            loop = asyncio.get_running_loop()
            pumps.append(loop.run_in_executor(self._pool, _read_frames, sock._sock, out, err))
            if stdin is not None:
                pumps.append(loop.run_in_executor(self._pool, _send_stdin, sock._sock, stdin))
            stop = await supervise(pumps[0], wall_s, watchdog)
            if stop is not None:  # killing the container kills every process in it
                with contextlib.suppress(errors.NotFound, errors.APIError):
                    await self._call(api.kill, cid)
            await pumps[0]
            status, oom = await self._call(self._outcome, cid)
        except (errors.DockerException, OSError) as exc:
            raise SandboxError(f"the container failed: {_short(exc)}") from None
        finally:
            try:
                await asyncio.shield(self._call(self._force_remove, cid))
            except (errors.DockerException, OSError) as exc:  # the daemon may be gone
                log.warning("could not remove container %s (reaped at next start): %s", cid, exc)
            if sock is not None:
                # The daemon keeps the attach connection open while unread stdin is pending,
                # so a command that ignored its stdin would leave the sender blocked: shut
                # the socket down (which wakes both pumps) before waiting for them.
                with contextlib.suppress(OSError):
                    sock._sock.shutdown(socket.SHUT_RDWR)
            await asyncio.gather(*pumps, return_exceptions=True)
            if sock is not None:
                sock._sock.close()
                sock.close()
        return command_result(status, out, err, limits, started=start, stop=stop, oom_killed=oom)

    def _create(self, ws: Workspace, argv: list[str], with_stdin: bool, limits: Limits) -> str:
        api, types = self._client.api, self._docker.types
        # Mount objects, not "src:dst:mode" strings: a ':' in <home> cannot break them.
        mounts = [
            types.Mount(path, path, type="bind", read_only=True)
            for path in self.config.docker_ro_binds
            if os.path.exists(path)
        ]
        mounts.append(types.Mount(WORK_DIR, str(ws.path), type="bind", read_only=False))
        mounts += [
            types.Mount(dest, str(src), type="bind", read_only=True)
            for dest, src in self.workspaces.ro_mounts.items()
            if src.is_dir()
        ]
        memory = f"{limits.memory_mb}m"
        file_size = limits.file_size_mb << 20
        host_config = api.create_host_config(
            mounts=mounts,
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": _TMPFS},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit=memory,
            memswap_limit=memory,  # no swap
            pids_limit=limits.pids,
            nano_cpus=int(limits.cpus * 1e9),
            init=True,  # a real pid 1 reaps zombies and forwards signals
            ulimits=[
                types.Ulimit(name="cpu", soft=limits.cpu_seconds, hard=limits.cpu_seconds + 1),
                types.Ulimit(name="fsize", soft=file_size, hard=file_size),
                types.Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
            ],
            # output comes through the attach stream; nothing is kept on the daemon's disk
            log_config=types.LogConfig(type="none"),
        )
        container = api.create_container(
            self.config.docker_image,
            command=argv,
            user=self.user,
            environment=sandbox_env(),
            working_dir=WORK_DIR,
            hostname="sandbox",
            stdin_open=with_stdin,  # with detach=False this also sets StdinOnce
            tty=False,
            labels={LABEL_GATEWAY: self.instance, LABEL_SESSION: ws.hash},
            host_config=host_config,
        )
        return str(container["Id"])

    def _outcome(self, cid: str) -> tuple[int, bool]:
        status = self._client.api.wait(cid, timeout=_API_TIMEOUT_S)
        state = self._client.api.inspect_container(cid)["State"]
        return int(status["StatusCode"]), bool(state.get("OOMKilled"))

    def _force_remove(self, cid: str) -> None:
        with contextlib.suppress(self._docker.errors.NotFound):
            self._client.api.remove_container(cid, force=True)

    def _remove_labelled(self, labels: dict[str, str]) -> int:
        if self._api is not None:
            return self._api.remove_labelled(labels)
        self._sdk()
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        stale = self._client.api.containers(all=True, quiet=True, filters=filters)
        for container in stale:
            self._force_remove(container["Id"])
        return len(stale)


def unix_socket_problem() -> str | None:
    """Connect to a unix DOCKER_HOST ourselves first: the SDK leaks the socket of a failed
    connect, and its error message buries the one fact that matters (no socket, refused)."""
    path = socket_path()
    if path is None:
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(_API_TIMEOUT_S)
        try:
            probe.connect(path)
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"
    return None


def _read_frames(raw: socket.socket, out: CappedBuffer, err: CappedBuffer) -> None:
    from docker.utils.socket import STDERR, frames_iter

    for stream, data in frames_iter(raw, tty=False):
        (err if stream == STDERR else out).feed(data)


def _send_stdin(raw: socket.socket, data: bytes) -> None:
    # A container that never reads stdin must not block its output; hence its own thread.
    with contextlib.suppress(OSError):
        raw.sendall(data)
        raw.shutdown(socket.SHUT_WR)


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
