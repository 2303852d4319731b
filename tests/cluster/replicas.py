"""`decapod run` replicas on one PostgreSQL database, with Telegram in polling mode against
the fake Bot API: each replica is a real process with a home of its own."""

from __future__ import annotations

import asyncio
import inspect
import json
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cli.harness import decapod, env_for, fake_llm_config, write_config
from tests.fakes.llm import FakeLLM
from tests.fakes.telegram import TOKEN, FakeTelegram

TOKEN_ENV = "DECAPOD_TEST_TELEGRAM_TOKEN"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def replica_config(
    store_url: str, telegram: FakeTelegram, llm: FakeLLM, port: int, grace_s: float = 1
) -> str:
    return fake_llm_config(
        llm.base_url,
        f"""
[store]
url = "{store_url}"

[gateway]
shutdown_grace_s = {grace_s}

[http]
port = {port}

[webui]
enabled = false

[memory]
enabled = false

[channels.tg]
type = "telegram"
token_env = "{TOKEN_ENV}"
api_base_url = "{telegram.base_url}"
file_base_url = "{telegram.file_base_url}"
chat_interval_s = 0
poll_timeout_s = 5

[channels.tg.access]
dm_policy = "open"
""",
    )


@dataclass
class Replica:
    home: Path
    proc: asyncio.subprocess.Process

    async def status(self) -> dict[str, Any] | None:
        """`decapod status --json`; None while it does not answer."""
        done = await decapod(self.home, "status", "--json", timeout=30)
        if done.returncode not in (0, 1):
            return None
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    async def role(self) -> str | None:
        report = await self.status()
        return None if report is None else str(report["cluster"]["role"])

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    def log(self) -> str:
        path = self.home / "stderr.log"
        return path.read_text(errors="replace") if path.exists() else ""


async def start_replica(
    home: Path, store_url: str, telegram: FakeTelegram, llm: FakeLLM, *, grace_s: float = 1
) -> Replica:
    write_config(home, replica_config(store_url, telegram, llm, _free_port(), grace_s))
    err = (home / "stderr.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env_for(home, **{TOKEN_ENV: TOKEN}),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=err,
    )
    err.close()
    return Replica(home, proc)


async def stop_all(replicas: list[Replica]) -> None:
    for replica in replicas:
        if replica.proc.returncode is None:
            replica.proc.send_signal(signal.SIGTERM)
    for replica in replicas:
        try:
            await asyncio.wait_for(replica.proc.wait(), 30)
        except TimeoutError:
            replica.kill()
            await replica.proc.wait()


async def eventually(check: Any, timeout: float, what: str) -> Any:
    """Call (and await) `check()` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"not reached in {timeout:g}s: {what}"
        await asyncio.sleep(0.2)


async def roles(replicas: list[Replica]) -> list[str | None]:
    return list(await asyncio.gather(*(r.role() for r in replicas)))
