"""/stop: a running turn ends at once while it streams, while a sandbox command runs (the
process is gone) and while it waits for approval; the turn is stored as stopped and is not
run again after a restart."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai  # noqa: F401  (the SDK loads before any wait starts)
import pytest

from bot.gateway import Gateway
from bot.providers.base import ToolCall
from bot.providers.testing import ScriptedProvider
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, Reply

_CHANNELS = {"tg": {"type": "telegram", "access": {"dm_policy": "open"}}}


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")


async def _until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


def _first(channel: RecordingChannel) -> str:
    """The answer (edited as it streams); /stop's own answer comes after it."""
    texts = channel.texts()
    return texts[0] if texts else ""


def _last(channel: RecordingChannel) -> str:
    texts = channel.texts()
    return texts[-1] if texts else ""


async def _rows(gw: Gateway, key: str) -> list[dict[str, Any]]:
    session = gw.sessions.get(key)
    await gw.sessions.load(session)
    assert session.row is not None
    return await gw.store.turns.for_session(session.row.id)


async def test_stop_while_streaming_ends_the_answer_and_it_is_not_run_again(
    make_config: Any,
) -> None:
    async with FakeLLM() as fake:
        config = make_config(
            providers={"fake": fake.provider()},
            models={"chat": ["fake:m"]},
            channels=_CHANNELS,
        )
        words = " ".join(f"word{i}" for i in range(400))
        fake.push(Reply(text=words, chunk_delay_s=0.05))
        channel = RecordingChannel("tg", console=False)
        async with Gateway(config, channels={"tg": channel}) as gw:
            await channel.push("tell me a long story")
            await _until(lambda: "word3" in _first(channel))
            await channel.push("/stop")
            await _until(lambda: _first(channel).endswith("Stopped."))
            await gw.sessions.wait_idle()
            shown = _first(channel)
            assert "word399" not in shown  # the model's stream was cut, not read to its end
            await _until(lambda: fake.open_requests == 0)
            rows = await _rows(gw, "tg:dm:u1")
            assert [r["outcome"] for r in rows] == [None, "stopped"]
            assert rows[-1]["content"] == shown
            assert await gw.store.inbound.status("tg", "d1") == "done"
            assert channel.texts()[1:] == ["Stopping it."]
        chat = "/v1/chat/completions"
        calls = len(fake.calls(path=chat))
        async with Gateway(config, channels={"tg": channel}) as gw:
            await asyncio.sleep(0.3)
            await gw.sessions.wait_idle()
        assert len(fake.calls(path=chat)) == calls and len(channel.texts()) == 2


async def test_stop_with_nothing_running_says_so(make_config: Any) -> None:
    channel = RecordingChannel("tg", console=False)
    config = make_config(channels=_CHANNELS)
    async with Gateway(config, provider=ScriptedProvider([]), channels={"tg": channel}):
        await channel.push("/stop")
        assert await channel.wait_for_messages(1) == ["Nothing of yours is running here."]


def _running(marker: str) -> bool:
    """Is a process with `marker` in its command line alive on this host (a container's
    processes are visible here too)?"""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            return True
    return False


@pytest.mark.parametrize("backend", ["bwrap", "docker"])
async def test_stop_during_a_long_sandbox_command_kills_it(make_config: Any, backend: str) -> None:
    if backend == "bwrap" and shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    if backend == "docker":
        from tests.sandbox.conftest import docker_skip_reason

        if (reason := docker_skip_reason()) is not None:
            pytest.skip(reason)
    marker = f"{3000 + os.getpid() % 1000}.{int(time.time() * 1000) % 100000}"
    command = json.dumps({"command": f"sleep {marker}"})
    provider = ScriptedProvider([[ToolCall("c1", "exec", command)]])
    config = make_config(
        sandbox={"backend": backend, "approval": "never", "allow_unenforced_limits": True},
        gateway={"owners": ["tg:owner"]},
        channels=_CHANNELS,
    )
    channel = RecordingChannel("tg", console=False)
    async with Gateway(config, provider=provider, channels={"tg": channel}) as gw:
        await channel.push("sleep for a long time", user="owner")
        await _until(lambda: _running(marker), timeout=60)
        await channel.push("/stop", user="owner")
        await _until(lambda: "Stopped." in channel.texts())
        await _until(lambda: not _running(marker))
        await gw.sessions.wait_idle()
        rows = await _rows(gw, "tg:dm:owner")
        assert rows[-1]["outcome"] == "stopped"
        # the stored turn keeps no tool call without its result
        assert all(r["tool_calls"] is None for r in rows)
        if backend == "docker":
            from tests.sandbox.conftest import docker_client

            assert gw.deps.sandbox is not None and gw.deps.sandbox.backend is not None
            label = f"decapod.sandbox={gw.deps.sandbox.backend.instance}"
            client = docker_client()
            try:
                assert client.api.containers(all=True, filters={"label": label}) == []
            finally:
                client.close()


async def test_stop_while_waiting_for_approval_withdraws_the_request(make_config: Any) -> None:
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    command = json.dumps({"command": "rm -rf build"})
    provider = ScriptedProvider([[ToolCall("c1", "exec", command)]])
    config = make_config(
        sandbox={"backend": "bwrap", "approval": "ask"},
        gateway={"owners": ["tg:owner"]},
        channels=_CHANNELS,
    )
    channel = RecordingChannel("tg", console=False)
    async with Gateway(config, provider=provider, channels={"tg": channel}) as gw:
        await channel.push("clean the build folder", user="owner")
        [ask] = await channel.wait_for_messages(1)
        assert "Approval needed" in ask
        approval_id = ask.split("/approve ")[1].split()[0]
        await channel.push("/stop", user="owner")
        await _until(lambda: "Stopped." in channel.texts())
        await gw.sessions.wait_idle()
        assert sorted(channel.texts()[1:]) == ["Stopped.", "Stopping it."]
        # the request is gone: approving it now runs nothing
        await channel.push(f"/approve {approval_id}", user="owner")
        await _until(lambda: len(channel.texts()) == 4)
        assert _last(channel) != "Approved."
        rows = await _rows(gw, "tg:dm:owner")
        assert rows[-1]["outcome"] == "stopped"
        assert provider.remaining == 0 and len(provider.requests) == 1


async def test_a_person_cannot_stop_someone_elses_turn(make_config: Any) -> None:
    async with FakeLLM() as fake:
        config = make_config(
            providers={"fake": fake.provider()},
            models={"chat": ["fake:m"]},
            channels={
                "tg": {
                    "type": "telegram",
                    "access": {"groups": {"*": {"require_mention": False}}},
                }
            },
        )
        fake.push(Reply(text="slow answer here", delay_s=1.0))
        channel = RecordingChannel("tg", console=False)
        from bot.messages import ConversationKind

        group = {"chat": "g1", "kind": ConversationKind.GROUP}
        async with Gateway(config, channels={"tg": channel}) as gw:
            await channel.push("question", user="alice", **group)
            await _until(lambda: gw.sessions.active == 1)
            await channel.push("/stop", user="bob", **group)
            await _until(lambda: len(channel.texts()) == 2)
            await gw.sessions.wait_idle()
        assert sorted(channel.texts()) == ["Nothing of yours is running here.", "slow answer here"]
