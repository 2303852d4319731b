"""Fixtures for files and voice out: the platform fakes, a fake speech server, gateways with
session workspaces (the sandbox's file side), and tiny real files."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.messages import Conversation, ConversationKind
from bot.providers.base import ChatRequest, ToolCall
from tests.channels.telegram.conftest import TOKEN_ENV, channel_table
from tests.fakes.discord import FakeDiscord
from tests.fakes.llm import FakeLLM
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import TOKEN, FakeTelegram

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is missing")
ALICE = 42
TG_DM = Conversation("tg", str(ALICE), ConversationKind.DM)
DISCORD_TOKEN_ENV = "DECAPOD_TEST_DISCORD_TOKEN"
SPEECH_KEY_ENV = "DECAPOD_TEST_SPEECH_KEY"
#: the workspaces of these tests; the sandbox's command side is not what is tested here
SANDBOX: dict[str, Any] = {"backend": "bwrap", "approval": "never"}


def tiny_png(width: int = 4, height: int = 3) -> bytes:
    """A real PNG (red pixels), written by hand: no imaging library needed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def send_file_call(path: str, call_id: str = "f1", **extra: Any) -> ToolCall:
    return ToolCall(call_id, "send_file", json.dumps({"path": path, **extra}))


def tool_results(request: ChatRequest) -> list[str]:
    """The tool results of the last step, in call order."""
    results = []
    for message in reversed(request.messages):
        if message.role != "tool":
            break
        results.append(message.content)
    return results[::-1]


def workspace(gateway: Gateway, conversation: Conversation) -> Path:
    sandbox = gateway.deps.sandbox
    assert sandbox is not None
    return sandbox.workspaces.prepare(conversation.session_key).path


@pytest.fixture
async def tg(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeTelegram]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def slack(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        monkeypatch.setenv("SLACK_BOT_TOKEN", server.bot_token)
        monkeypatch.setenv("SLACK_APP_TOKEN", server.app_token)
        yield server


@pytest.fixture
async def discord_fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval_s=1.0) as server:
        monkeypatch.setenv(DISCORD_TOKEN_ENV, server.token)
        yield server


@pytest.fixture
async def speech_server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeLLM]:
    monkeypatch.setenv(SPEECH_KEY_ENV, "sk-speech-test-key-0123456789")
    async with FakeLLM() as server:
        yield server


def speech_sections(*servers: FakeLLM) -> dict[str, Any]:
    """[providers] and [speech] for a chain over `servers`, in order, and [transcription] on
    the first of them: a voice note is heard before it is answered."""
    providers = {
        f"tts{i}": {"base_url": f"{s.base_url}/v1", "api_key_env": SPEECH_KEY_ENV}
        for i, s in enumerate(servers)
    }
    providers["local"] = {"preset": "ollama"}
    chain = [f"tts{i}:tts-1" for i in range(len(servers))]
    return {
        "providers": providers,
        "speech": {"chain": chain, "voice": "nova"},
        "transcription": {"chain": ["tts0:whisper-1"]},
    }


@pytest.fixture
def tg_gateway_config(make_config: Callable[..., Any], tg: FakeTelegram) -> Callable[..., Any]:
    def build(**sections: Any) -> Any:
        base: dict[str, Any] = {
            "channels": {"tg": channel_table(tg, access={"dm_policy": "open"})},
            "gateway": {"owners": [f"tg:{ALICE}"]},
            "memory": {"enabled": False},
            "sandbox": SANDBOX,
        }
        base.update(sections)
        return make_config(**base)

    return build


@pytest.fixture
def slack_gateway_config(make_config: Callable[..., Any], slack: FakeSlack) -> Any:
    table = {"type": "slack", "api_url": slack.api_url, "access": {"dm_policy": "open"}}
    return make_config(channels={"slack": table}, memory={"enabled": False}, sandbox=SANDBOX)


@pytest.fixture
def discord_gateway_config(
    make_config: Callable[..., Any], discord_fake: FakeDiscord
) -> Callable[..., Any]:
    def build(**sections: Any) -> Any:
        table = {
            "type": "discord",
            "token_env": DISCORD_TOKEN_ENV,
            "api_base_url": discord_fake.api_base,
            "gateway_url": discord_fake.gateway_url,
            "access": {"dm_policy": "open", "groups": {"*": {}}},
        }
        return make_config(
            channels={"discord": table}, memory={"enabled": False}, sandbox=SANDBOX, **sections
        )

    return build
