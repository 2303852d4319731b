"""The Docker daemon goes away while a command runs in a container (restarted by the host's
package manager, killed by the OOM killer): the command ends as a SandboxError the tool turns
into a message, never a raw connection error from the SDK's HTTP layer, and the sandbox
works again once the daemon is back.

The daemon is the real one, reached through a unix-socket forwarder that the test cuts."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from bot.errors import SandboxError
from tests.sandbox.conftest import docker_skip_reason, run_sh, start_backend

REAL_SOCKET = "/var/run/docker.sock"


class SocketForwarder:
    """Passes every connection on to the real daemon; after `cut` it drops them all, and
    every new one at once, as a daemon on its way down does. (Not a missing socket: the
    docker SDK leaves its socket open when a connect fails.)"""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.up = True
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._handle, str(self.path))

    def cut(self) -> None:
        self.up = False
        for writer in list(self._writers):
            writer.close()

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_unix_connection(REAL_SOCKET)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def test_the_daemon_gone_mid_command_is_a_sandbox_error_and_it_works_once_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if (reason := docker_skip_reason()) is not None:
        pytest.skip(reason)
    import docker

    # the test's own client goes to the daemon directly
    real = docker.DockerClient(base_url=f"unix://{REAL_SOCKET}", timeout=30)
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    forwarder = SocketForwarder(tmp_path / "docker.sock")
    await forwarder.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{forwarder.path}")
    backend = await start_backend("docker", home)
    label = f"decapod.sandbox={getattr(backend, 'instance', '')}"
    try:
        running = asyncio.create_task(run_sh(backend, "s1", "sleep 3; echo done", timeout=30))
        async with asyncio.timeout(30):
            while not real.api.containers(filters={"label": label}):
                await asyncio.sleep(0.05)
        forwarder.cut()

        with pytest.raises(SandboxError) as failed:
            await running
        assert "container" in str(failed.value)

        forwarder.up = True
        result = await run_sh(backend, "s1", "echo back")
        assert result.stdout.strip() == b"back"

        # gone again at shutdown: the gateway still stops (what is left is reaped at the
        # next start)
        forwarder.cut()
        await backend.aclose()
    finally:
        with contextlib.suppress(Exception):
            await backend.aclose()
        for container in real.api.containers(all=True, filters={"label": label}):
            real.api.remove_container(container["Id"], force=True)
        real.close()
        await forwarder.stop()
