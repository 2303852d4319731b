"""S1: secrets a person pastes never reach the LLM, the logs, the database or the reply."""

from __future__ import annotations

import json
import logging
import random
import string
from pathlib import Path
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.logging import setup_logging
from bot.providers.base import ChatRequest
from bot.store import sqlite
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM


def _rand(alphabet: str, n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


AWS_ID = "AKIA" + _rand(string.ascii_uppercase + string.digits, 16, 1)
AWS_SECRET = _rand(string.ascii_letters + string.digits + "/+", 40, 2)
GITHUB = "ghp_" + _rand(string.ascii_letters + string.digits, 36, 3)
SECRETS = (AWS_ID, AWS_SECRET, GITHUB)


@pytest.fixture
def file_log(tmp_path: Path) -> Path:
    """The log file as `decapod run` writes it; the root logger is put back after the test
    by the `restore_logging` fixture that every test has."""
    log_file = tmp_path / "decapod.log"
    setup_logging("DEBUG", "json", log_file)
    return log_file


# as a message, and as a command's arguments, which go to the model without the text
@pytest.mark.parametrize("command", ["", "/ask "], ids=["text", "ask"])
async def test_s1_inbound_fake_aws_key_never_leaves(
    make_config: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: Any,
    file_log: Path,
    command: str,
) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-fake-llm-key-0001")
    message = command + (
        f"my aws creds: aws_access_key_id={AWS_ID} aws_secret_access_key={AWS_SECRET} "
        f"and my token {GITHUB} - please repeat them back"
    )
    async with FakeLLM() as fake:
        # a model that echoes what it was sent: the reply shows whatever reached it
        fake.reply_fn = lambda request: _echo(request)  # type: ignore[assignment]
        config = make_config(
            providers={"fake": fake.provider(health_probe=False)},
            models={"chat": ["fake:m"]},
        )
        channel = RecordingChannel(console=True)
        caplog.set_level(logging.DEBUG)
        async with Gateway(config, channels={"test": channel}) as gw:
            await channel.push(message)
            [reply] = await channel.wait_for_messages(1)
            logging.getLogger("decapod.test").info("the person said %s", message)
        bodies = json.dumps([r.body for r in fake.requests])
    conn = sqlite.connect(gw.config.db_path)
    rows = json.dumps(conn.execute("SELECT * FROM turns").fetchall())
    inbound = json.dumps(conn.execute("SELECT payload FROM inbound").fetchall())
    conn.close()
    everything = {
        "llm": bodies,
        "reply": reply,
        "turns": rows,
        "inbound": inbound,
        "caplog": caplog.text,
        "logfile": file_log.read_text(),
    }
    for where, text in everything.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret[:6]}… leaked into {where}"
    assert "[REDACTED:" in reply and "[REDACTED:" in rows


def _echo(request: Any) -> Any:
    from tests.fakes.llm import Reply

    return Reply(text="You said: " + request.body["messages"][-1]["content"])


async def test_provider_key_is_registered_and_redacted_from_replies(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "local-llm-key-" + _rand(string.ascii_letters, 24, 9)
    monkeypatch.setenv("LOCAL_KEY", key)

    async def leaky(request: ChatRequest) -> str:
        return f"my key is {key}!"

    from bot.providers.testing import FunctionProvider

    config = make_config(providers={"local": {"preset": "ollama", "api_key_env": "LOCAL_KEY"}})
    channel = RecordingChannel(console=True)
    async with Gateway(config, provider=FunctionProvider(leaky), channels={"test": channel}) as gw:
        gw._register_secrets()
        await channel.push("what is your key?")
        [reply] = await channel.wait_for_messages(1)
    assert key not in reply and "[REDACTED:" in reply
