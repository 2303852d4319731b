"""What a server wants kept with a tool call goes back to it, and to no other: Gemini's
OpenAI-compatible API sends a thought signature with each call
(`extra_content.google.thought_signature`) and may refuse a later request whose past calls
lack it. End to end through the gateway, the store and a restart, with the fake LLM
streaming the call as Gemini does."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest

from bot.agent.context import estimate_messages, needs_compaction
from bot.gateway import Gateway
from bot.providers.base import ChatMessage, ToolCall
from bot.providers.openai_messages import MAX_CALL_EXTRA, call_extra
from tests.fakes.channel import RecordingChannel
from tests.fakes.llm import FakeLLM, Reply

SIGNED = {"google": {"thought_signature": "c2lnbmF0dXJlLW9mLXRoZS10aG91Z2h0"}}


@pytest.fixture(autouse=True)
def _fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sk-test-not-a-secret")


def _config(make_config: Any, gemini: FakeLLM, other: FakeLLM) -> Any:
    def provider(fake: FakeLLM) -> dict[str, Any]:
        return {"base_url": fake.base_url + "/v1", "api_key_env": "FAKE_LLM_KEY",
                "first_token_timeout_s": 5, "health_probe": False}  # fmt: skip

    return make_config(
        providers={"gemini": provider(gemini), "other": provider(other)},
        models={"chat": ["gemini:gemini-3-flash", "other:other-model"]},
        sandbox={"backend": "none"},
        memory={"enabled": False},
    )


def _past_calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [call for m in body["messages"] for call in m.get("tool_calls") or ()]


async def _answered(
    gw: Gateway, channel: RecordingChannel, text: str, count: int, delivery_id: str | None = None
) -> None:
    await channel.push(text, delivery_id=delivery_id)
    await channel.wait_for_messages(count, timeout=30)
    while gw.sessions.active or gw.sessions.queue_depth:
        await asyncio.sleep(0.01)


async def test_a_calls_signature_goes_back_to_its_provider_after_a_restart_and_not_elsewhere(
    make_config: Any,
) -> None:
    call = ToolCall("call_1", "current_time", '{"zone": "UTC"}', extra=json.dumps(SIGNED))
    async with FakeLLM() as gemini, FakeLLM() as other:
        config = _config(make_config, gemini, other)
        gemini.push(Reply(tool_calls=[call]), Reply(text="It is noon."))
        channel = RecordingChannel(console=True)
        async with Gateway(config, channels={"test": channel}) as gw:
            await _answered(gw, channel, "what time is it?", 1)
        # the call's own turn: its signature back with it
        [past] = _past_calls(gemini.calls(path="/v1/chat/completions")[1].body)
        assert past["id"] == "call_1" and past["extra_content"] == SIGNED

        # a later turn, after a restart: the history comes from the store
        gemini.push(Reply(text="Still noon."), Reply.error(429, retry_after=60))
        other.push(Reply(text="Noon, still."))
        channel = RecordingChannel(console=True)
        async with Gateway(config, channels={"test": channel}) as gw:
            # its own delivery ids: the first run's are known to the store
            await _answered(gw, channel, "and now?", 1, "r1")
            await _answered(gw, channel, "and now, again?", 2, "r2")
    [past] = _past_calls(gemini.calls(path="/v1/chat/completions")[2].body)
    assert past["extra_content"] == SIGNED
    # the provider that took over gets the call without what only Gemini reads
    [past] = _past_calls(other.calls(path="/v1/chat/completions")[-1].body)
    assert past["id"] == "call_1" and "extra_content" not in past


def test_a_calls_extra_is_kept_only_when_it_is_a_small_object() -> None:
    kept = json.dumps(SIGNED, separators=(",", ":"))
    assert call_extra(SIGNED, "gemini", "f") == (kept, "gemini")
    assert call_extra("not an object", "gemini", "f") == ("", "")
    huge = {"google": {"thought_signature": "x" * MAX_CALL_EXTRA}}
    assert call_extra(huge, "gemini", "f") == ("", "")
    # a lone surrogate (a server's `\udcff` escape) has no UTF-8 form: kept as its escape,
    # where measuring it crashed the reading of the stream
    odd = {"google": {"thought_signature": "sig\udcff"}}
    text, provider = call_extra(odd, "gemini", "f")
    assert json.loads(text) == odd and text.encode() and provider == "gemini"


def test_a_calls_extra_counts_towards_the_context_window() -> None:
    signature = {"google": {"thought_signature": "x" * 12_000}}
    call = ToolCall("call_1", "current_time", "{}", extra=json.dumps(signature))
    signed = [ChatMessage("user", "what time is it?"), ChatMessage("assistant", "", (call,))]
    bare = [signed[0], ChatMessage("assistant", "", (replace(call, extra=""),))]
    assert estimate_messages(signed) - estimate_messages(bare) >= 3_000
    assert needs_compaction(100, signed, 4_000, 0.75)
    assert not needs_compaction(100, bare, 4_000, 0.75)
