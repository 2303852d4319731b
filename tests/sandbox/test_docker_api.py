"""The Docker daemon calls made at start, over the socket, against a stand-in daemon."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fake_docker_daemon import PRESENT_IMAGE, FakeDockerDaemon

from bot.sandbox.docker_api import DaemonApi, DaemonError


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[FakeDockerDaemon]:
    served = await FakeDockerDaemon(tmp_path / "docker.sock").start()
    yield served
    await served.stop()


async def test_version_info_image_and_reaping(daemon: FakeDockerDaemon) -> None:
    api = DaemonApi(str(daemon.socket_path), timeout=5)
    daemon.containers = {
        "mine": {"decapod.sandbox": "abc", "decapod.session": "s1"},
        "other-gateway": {"decapod.sandbox": "xyz"},
    }

    assert (await asyncio.to_thread(api.version))["Version"] == "99.0-fake"
    assert (await asyncio.to_thread(api.info))["PidsLimit"] is True
    assert await asyncio.to_thread(api.has_image, PRESENT_IMAGE)
    assert not await asyncio.to_thread(api.has_image, "decapod/absent:never")
    removed = await asyncio.to_thread(api.remove_labelled, {"decapod.sandbox": "abc"})

    assert removed == 1 and list(daemon.containers) == ["other-gateway"]


async def test_no_daemon_is_a_daemon_error(tmp_path: Path) -> None:
    api = DaemonApi(str(tmp_path / "absent.sock"), timeout=5)

    with pytest.raises(DaemonError, match=r"absent\.sock"):
        await asyncio.to_thread(api.version)


def test_the_docker_backend_starts_without_loading_the_sdk(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    sock = tmp_path / "docker.sock"
    code = (
        "import asyncio, os, sys\n"
        "from pathlib import Path\n"
        "from fake_docker_daemon import FakeDockerDaemon, PRESENT_IMAGE\n"
        "from bot.sandbox import SandboxConfig, select_backend\n"
        "async def main():\n"
        f"    daemon = await FakeDockerDaemon(Path({str(sock)!r})).start()\n"
        f"    os.environ['DOCKER_HOST'] = 'unix://' + {str(sock)!r}\n"
        "    config = SandboxConfig(backend='docker', docker_image=PRESENT_IMAGE)\n"
        f"    backend, why = await select_backend(config, Path({str(home)!r}))\n"
        "    assert backend is not None and backend.name == 'docker', why\n"
        "    loaded = 'docker' in sys.modules\n"
        "    await backend.aclose()\n"
        "    await daemon.stop()\n"
        "    print(__import__('json').dumps([why, loaded]))\n"
        "asyncio.run(main())\n"
    )
    here = Path(__file__).parent
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=here
    )
    why, loaded = json.loads(out.stdout.strip().splitlines()[-1])

    assert why.startswith("docker 99.0-fake: image decapod/sandbox:test")
    assert loaded is False
