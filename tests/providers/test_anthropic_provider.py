"""AnthropicProvider end to end against the fake server on 127.0.0.1: streams over aiohttp with
our SSE reading, the health probe through the real anthropic SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.errors import ContextTooLong, ProviderHTTPError, ProviderTimeout
from bot.providers.anthropic import AnthropicProvider
from bot.providers.base import (
    ChatMessage,
    ChatRequest,
    ToolCall,
    ToolCallEvent,
    ToolSpec,
    Usage,
    complete,
)
from bot.providers.config import ProviderConfig
from tests.fakes.llm import FakeLLM, Reply

LOOKUP = ToolSpec(
    "lookup",
    "Look a word up",
    {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


def make(fake: FakeLLM, base_suffix: str = "", **options: float) -> AnthropicProvider:
    config = ProviderConfig(type="anthropic", base_url=fake.base_url + base_suffix, **options)  # type: ignore[arg-type]
    return AnthropicProvider("claude", config, ["sk-ant-test"])


@pytest_asyncio.fixture
async def provider(fake: FakeLLM) -> AsyncIterator[AnthropicProvider]:
    built = make(fake)
    yield built
    await built.aclose()


def ask(text: str = "hi", **fields: object) -> ChatRequest:
    return ChatRequest(model="claude-test", messages=(ChatMessage("user", text),), **fields)  # type: ignore[arg-type]


async def test_text_and_usage_with_cache_tokens(fake: FakeLLM, provider: AnthropicProvider) -> None:
    fake.push(
        Reply(text="Short answer.", input_tokens=9, cache_read_tokens=120, cache_write_tokens=40)
    )

    out = await complete(provider, ask(system="Be brief."))

    assert out.text == "Short answer."
    assert out.usage == Usage(
        input_tokens=9, output_tokens=7, cache_read_tokens=120, cache_write_tokens=40
    )
    assert (out.finish.reason, out.finish.provider, out.finish.model) == (
        "stop",
        "claude",
        "claude-test",
    )
    request = fake.requests[-1]
    assert request.path == "/v1/messages"
    assert request.headers["Authorization"] == "Bearer sk-ant-test"
    assert request.body["system"] == [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
    ]
    assert request.body["max_tokens"] == 4096  # the config default when the request sets none
    assert all(m["role"] != "system" for m in request.body["messages"])


async def test_history_maps_to_messages_api_shape(
    fake: FakeLLM, provider: AnthropicProvider
) -> None:
    call = ToolCall("toolu_1", "lookup", '{"word": "crab"}')
    request = ChatRequest(
        model="claude-test",
        system="sys",
        messages=(
            ChatMessage("user", "what is a crab?"),
            ChatMessage("user", "briefly"),
            ChatMessage("assistant", "Let me check.", tool_calls=(call,)),
            ChatMessage("tool", "a decapod crustacean", tool_call_id="toolu_1", name="lookup"),
            ChatMessage("system", "Earlier: the person likes short answers."),
            ChatMessage("user", "thanks"),
        ),
        tools=(LOOKUP,),
        max_tokens=300,
    )

    await complete(provider, request)

    body = fake.requests[-1].body
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is a crab?"},
                {"type": "text", "text": "briefly"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"word": "crab"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": "a decapod crustacean",
                },
                {"type": "text", "text": "thanks"},
            ],
        },
    ]
    assert body["system"][0]["text"] == "sys\n\nEarlier: the person likes short answers."
    assert body["tools"] == [
        {"name": "lookup", "description": "Look a word up", "input_schema": LOOKUP.parameters}
    ]
    assert body["max_tokens"] == 300


async def test_tool_use_input_json_fragments_become_one_tool_call(
    fake: FakeLLM, provider: AnthropicProvider
) -> None:
    call = ToolCall("toolu_9", "lookup", json.dumps({"word": "decapod", "lang": "en"}))
    fake.push(Reply(text="Looking.", tool_calls=[call]))

    out = await complete(provider, ask(tools=(LOOKUP,)))

    assert out.text == "Looking."
    assert out.tool_calls == [call]
    assert out.finish.reason == "tool_calls"


async def test_reset_inside_tool_input_emits_no_tool_call(
    fake: FakeLLM, provider: AnthropicProvider
) -> None:
    call = ToolCall("toolu_9", "lookup", json.dumps({"word": "decapod", "lang": "en"}))
    # message_start, ping, tool block start, two input fragments, then the connection drops
    fake.push(Reply(tool_calls=[call], reset_after_chunks=5))
    seen: list[object] = []

    with pytest.raises(ProviderHTTPError) as caught:
        async for event in provider.stream(ask()):
            seen.append(event)

    assert caught.value.code == "connection"
    assert not any(isinstance(e, ToolCallEvent) for e in seen)


async def test_base_url_with_v1_suffix_is_accepted(fake: FakeLLM) -> None:
    provider = make(fake, "/v1")
    try:
        out = await complete(provider, ask())
    finally:
        await provider.aclose()

    assert out.text
    assert fake.requests[-1].path == "/v1/messages"


@pytest.mark.parametrize(
    ("reply", "kind", "status", "code", "retryable"),
    [
        (Reply.error(429, retry_after=3), ProviderHTTPError, 429, "rate_limit_error", True),
        (Reply.error(529), ProviderHTTPError, 529, "overloaded_error", True),
        (Reply.error(401), ProviderHTTPError, 401, "authentication_error", False),
        (Reply.error(400), ProviderHTTPError, 400, "invalid_request_error", False),
        (Reply.context_length(), ContextTooLong, 400, "context_length_exceeded", False),
        (Reply.insufficient_quota(), ProviderHTTPError, 402, "billing", False),
    ],
)
async def test_http_errors_map_to_our_error_tree(
    fake: FakeLLM,
    provider: AnthropicProvider,
    reply: Reply,
    kind: type[Exception],
    status: int,
    code: str,
    retryable: bool,
) -> None:
    fake.push(reply)

    with pytest.raises(kind) as caught:
        await complete(provider, ask())

    error = caught.value
    assert isinstance(error, ProviderHTTPError)
    assert (error.status, error.code, error.retryable) == (status, code, retryable)
    if reply.headers.get("Retry-After"):
        assert error.retry_after == 3.0


async def test_overloaded_event_inside_the_stream_is_retryable(
    fake: FakeLLM, provider: AnthropicProvider
) -> None:
    fake.push(Reply(text="part of it", stream_error="overloaded", stream_error_after_chunks=4))

    with pytest.raises(ProviderHTTPError) as caught:
        await complete(provider, ask())

    assert (caught.value.status, caught.value.retryable) == (529, True)


async def test_first_token_timeout(fake: FakeLLM) -> None:
    provider = make(fake, first_token_timeout_s=0.15)
    fake.push(Reply(hang=True))
    try:
        with pytest.raises(ProviderTimeout) as caught:
            await complete(provider, ask())
        await fake.wait_idle()
    finally:
        await provider.aclose()

    assert caught.value.phase == "first_token"
    assert fake.disconnects == 1


async def test_probe(fake: FakeLLM, provider: AnthropicProvider) -> None:
    await provider.probe()
    fake.models_status = 500

    with pytest.raises(ProviderHTTPError):
        await provider.probe()
