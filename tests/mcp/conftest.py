"""MCP test helpers: the SDK server of mcp_test_server.py over stdio or streamable HTTP, a
gateway that talks to the fake LLM (real openai SDK) and a recording channel."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.gateway import Gateway
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM

SERVER = Path(__file__).resolve().parent / "mcp_test_server.py"
#: a cold interpreter importing the SDK takes seconds on a busy machine
START_S = 90.0


def stdio_entry(**extra: Any) -> dict[str, Any]:
    """A host stdio entry running the test server with this interpreter."""
    entry: dict[str, Any] = {
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(SERVER)],
        "run_in_sandbox": False,
        "env": ["MCP_TEST_STATE"],
        "startup_timeout_s": START_S,
    }
    entry.update(extra)
    return entry


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder the test server writes its pid and markers into."""
    folder = tmp_path / "mcp-state"
    folder.mkdir()
    monkeypatch.setenv("MCP_TEST_STATE", str(folder))
    return folder


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as llm:
        yield llm


@pytest.fixture
def gateway_config(make_config: Any, fake: FakeLLM, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-fake-llm")

    def build(servers: dict[str, Any], mcp: dict[str, Any] | None = None, **sections: Any) -> Any:
        defaults: dict[str, Any] = {
            "providers": {"fake": fake.provider(health_probe=False)},
            "models": {"chat": ["fake:m"]},
            "gateway": {"owners": ["tg:owner"]},
            "channels": {
                "tg": {
                    "type": "telegram",
                    "access": {
                        "dm_policy": "open",
                        "operators": ["op"],
                        "groups": {"*": {"require_mention": False}},
                    },
                }
            },
            "sandbox": {"backend": "none"},
        }
        return make_config(**(defaults | sections), mcp={**(mcp or {}), "servers": servers})

    return build


@contextlib.asynccontextmanager
async def running(config: Any, *wait_for: str) -> AsyncIterator[tuple[Gateway, RecordingChannel]]:
    """A started gateway on the channel "tg", once the named servers are ready."""
    channel = RecordingChannel("tg", console=False)
    async with Gateway(config, channels={"tg": channel}) as gw:
        assert gw.mcp is not None
        for name in wait_for:
            await asyncio.wait_for(gw.mcp.wait_ready(name), START_S)
        yield gw, channel


async def until(predicate: Any, timeout: float = START_S) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is gone once reaped
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_server(state: Path) -> Iterator[str]:
    """The test server on streamable HTTP; its URL."""
    yield from _serve("--http", "/mcp")


@pytest.fixture
def sse_server(state: Path) -> Iterator[str]:
    """The test server on SSE; its URL."""
    yield from _serve("--sse", "/sse")


def _serve(mode: str, path: str) -> Iterator[str]:
    port = free_port()
    proc = start_http_server(mode, port)
    try:
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        stop_http_server(proc)


def start_http_server(mode: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), mode, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_port(port, proc)
    except BaseException:
        stop_http_server(proc)
        raise
    return proc


def stop_http_server(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    import time

    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the HTTP test server exited"
        with socket.socket() as s, contextlib.suppress(OSError):
            s.connect(("127.0.0.1", port))
            return
        time.sleep(0.05)
    raise TimeoutError("the HTTP test server did not listen")
