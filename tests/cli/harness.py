"""`decapod` run as a process, beside fake servers that run in the test's own event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAKE_KEY = "sk-test-key-for-the-fake-llm"


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DECAPOD_")}
    env.update(DECAPOD_HOME=str(home), FAKE_LLM_KEY=FAKE_KEY, **extra)
    return env


async def decapod(
    home: Path, *args: str, stdin: str | None = None, timeout: float = 60, **env: str
) -> Finished:
    """Run `decapod ARGS` to its end; the event loop keeps serving the fakes meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env_for(home, **env),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), timeout
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Finished(proc.returncode, out.decode(), err.decode())


async def start(home: Path, *args: str, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env_for(home, **env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> Finished:
    if proc.returncode is None:
        proc.send_signal(sig)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return Finished(proc.returncode, out.decode(), err.decode())


async def until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not reached in {timeout:g}s: {what}"
        await asyncio.sleep(0.05)


def write_config(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def fake_llm_config(base_url: str, extra: str = "") -> str:
    """A config whose one provider is the fake LLM at `base_url`."""
    return (
        f'[providers.fake]\nbase_url = "{base_url}/v1"\napi_key_env = "FAKE_LLM_KEY"\n'
        'first_token_timeout_s = 10\n\n[models]\nchat = ["fake:m"]\n\n'
        '[sandbox]\nbackend = "none"\n\n' + extra
    )
