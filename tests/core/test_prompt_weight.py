"""The request a plain "hello" from the owner in a DM sends on the default config (the most
tools) stays within P7's 8 KB, taken at the fake model server behind the provider's stream client.
Every tool schema and system prompt line rides on every turn: this is where a new tool, or a
wordy description, shows its cost."""

from __future__ import annotations

import json
from typing import Any

import openai  # noqa: F401  (the SDK loads before the gateway's turn waits start)
import pytest

from bot.gateway import Gateway
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM

P7_BYTES = 8 * 1024
#: what fifty installed skills may add to the shipped skills' list (its default budget)
SKILL_LIST_BUDGET = 320


async def test_the_default_owner_request_stays_within_8_kb(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("P7_KEY", "sk-p7-test")
    async with FakeLLM() as fake:
        fake.push("hi")
        config = make_config(
            providers={"fake": {"base_url": fake.base_url + "/v1", "api_key_env": "P7_KEY"}},
            models={"chat": ["fake:p7-model"]},
        )
        channel = RecordingChannel(console=True)
        async with Gateway(config, channels={"test": channel}):
            await channel.push("hello", user="owner")
            await channel.wait_for_messages(1, timeout=30)
        [call] = fake.calls(path="/v1/chat/completions")
    body = call.body
    names = {t["function"]["name"] for t in body["tools"]}
    # the parts that cost the most are all there: otherwise the figure proves nothing (exec
    # too, where this host has a sandbox backend, as the machines that run the suite do)
    assert {"read_file", "schedule_job", "web_fetch", "use_skill", "skill_edit"} <= names
    system = body["messages"][0]["content"]
    list_start = system.index("Skills (")
    shipped_list = system[list_start:].split("\n\n", 1)[0]
    size = len(json.dumps(body, separators=(",", ":")).encode())
    # with 50 skills installed the list grows to its budget, and no further
    assert size - len(shipped_list.encode()) + SKILL_LIST_BUDGET <= P7_BYTES, size
