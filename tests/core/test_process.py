"""The real `decapod` process: start-up imports, kill -9 recovery, graceful stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot.store import sqlite
from tests.fakes.llm import FakeLLM, Reply

SDKS = (
    "openai",
    "anthropic",
    "telegram",
    "slack_bolt",
    "slack_sdk",
    "discord",
    "aiohttp",
    "docker",
    "prometheus_client",
    "pydantic",
    "numpy",
)


def test_version_imports_no_sdk() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bot", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("decapod ")
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert not imported & set(SDKS), sorted(imported & set(SDKS))


class Chat:
    """`decapod chat` in a subprocess, driven through its stdin and stdout."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.proc: asyncio.subprocess.Process | None = None
        self.out = ""

    async def start(self) -> Chat:
        env = {**os.environ, "DECAPOD_HOME": str(self.home), "FAKE_LLM_KEY": "sk-test-key-x"}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "chat",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return self

    async def say(self, text: str) -> None:
        assert self.proc and self.proc.stdin
        self.proc.stdin.write(text.encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, needle: str, timeout: float = 30.0) -> None:
        assert self.proc and self.proc.stdout
        deadline = time.monotonic() + timeout
        while needle not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not in output: {self.out!r}")
            try:
                chunk = await asyncio.wait_for(self.proc.stdout.read(4096), left)
            except TimeoutError:
                continue
            if not chunk:
                raise AssertionError(f"process ended before {needle!r}: {self.out!r}")
            self.out += chunk.decode()

    async def close(self) -> int:
        assert self.proc and self.proc.stdin
        self.proc.stdin.close()
        return await asyncio.wait_for(self.proc.wait(), 30)

    def kill(self) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.kill()


def _write_config(home: Path, fake: FakeLLM, **gateway: Any) -> None:
    home.mkdir(parents=True, exist_ok=True)
    extra = "".join(f"{k} = {v}\n" for k, v in gateway.items())
    (home / "config.toml").write_text(
        f"[gateway]\n{extra}\n"
        f'[providers.fake]\nbase_url = "{fake.base_url}/v1"\napi_key_env = "FAKE_LLM_KEY"\n\n'
        '[models]\nchat = ["fake:m"]\n'
    )


async def _until(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def _inbound_statuses(db: Path) -> list[str]:
    conn = sqlite.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [r[0] for r in conn.execute("SELECT status FROM inbound ORDER BY received_at")]
    finally:
        conn.close()


@pytest.mark.slow
async def test_kill_9_during_a_turn_loses_nothing_and_the_next_message_works(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    async with FakeLLM() as fake:
        _write_config(home, fake)
        fake.push(Reply(hang=True))
        chat = await Chat(home).start()
        try:
            await chat.expect("you> ")
            await chat.say("hello before the crash")
            await _until(lambda: len(fake.calls(path="/v1/chat/completions")) == 1)
            os.kill(chat.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
            await chat.proc.wait()  # type: ignore[union-attr]
        finally:
            chat.kill()
        assert _inbound_statuses(home / "decapod.db") == ["pending"]

        fake.push(Reply(text="answer after restart"), Reply(text="second answer"))
        chat = await Chat(home).start()
        try:
            await chat.expect("answer after restart")
            replayed = fake.calls(path="/v1/chat/completions")[1]
            assert replayed.body["messages"][-1]["content"] == "hello before the crash"
            await chat.say("and now?")
            await chat.expect("second answer")
            assert await chat.close() == 0
        finally:
            chat.kill()
        assert _inbound_statuses(home / "decapod.db") == ["done", "done"]


@pytest.mark.slow
async def test_sigterm_lets_the_running_turn_finish(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with FakeLLM() as fake:
        _write_config(home, fake)
        fake.push(Reply(text="finished gracefully", delay_s=1.0))
        chat = await Chat(home).start()
        try:
            await chat.expect("you> ")
            await chat.say("take your time")
            await _until(lambda: len(fake.calls(path="/v1/chat/completions")) == 1)
            chat.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            await chat.expect("finished gracefully")
            assert await asyncio.wait_for(chat.proc.wait(), 20) == 0  # type: ignore[union-attr]
        finally:
            chat.kill()
        assert _inbound_statuses(home / "decapod.db") == ["done"]


@pytest.mark.slow
async def test_reminder_typed_in_chat_arrives_after_a_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with FakeLLM() as fake:
        _write_config(home, fake)
        with (home / "config.toml").open("a") as f:
            f.write("\n[scheduler]\nlate_note_after_seconds = 0\n")
        chat = await Chat(home).start()
        try:
            await chat.expect("you> ")
            said = time.monotonic()
            # due far enough ahead that a busy machine has closed this process by then
            await chat.say("remind me in 5 seconds to stretch")
            await chat.expect("stretch")
            assert await chat.close() == 0
        finally:
            chat.kill()
        await asyncio.sleep(said + 5 + 1.0 - time.monotonic())  # due while nothing runs
        chat = await Chat(home).start()
        try:
            await chat.expect("late by", timeout=30)
            assert "stretch" in chat.out
            assert await chat.close() == 0
        finally:
            chat.kill()
        assert fake.calls(path="/v1/chat/completions") == []
