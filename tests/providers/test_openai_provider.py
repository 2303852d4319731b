"""OpenAIProvider end to end against the fake server on 127.0.0.1: streams over aiohttp with
our SSE reading, the health probe through the real openai SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.errors import ConfigError, ContextTooLong, ProviderHTTPError, ProviderTimeout
from bot.providers.base import (
    ChatMessage,
    ChatRequest,
    ToolCall,
    ToolCallEvent,
    ToolSpec,
    Usage,
    complete,
)
from bot.providers.build import make_provider
from bot.providers.config import ProviderConfig
from bot.providers.openai import OpenAIProvider
from bot.providers.testing import ManualClock
from tests.fakes.forward_proxy import environment_proxy, thread_hops
from tests.fakes.llm import DEFAULT_TEXT, FakeLLM, Reply

WEATHER = ToolSpec(
    "weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


def make(fake: FakeLLM, keys: list[str] | None = None, **options: float) -> OpenAIProvider:
    config = ProviderConfig(base_url=fake.base_url + "/v1", **options)  # type: ignore[arg-type]
    return OpenAIProvider("local", config, keys or ["sk-test"], clock=ManualClock())


@pytest_asyncio.fixture
async def provider(fake: FakeLLM) -> AsyncIterator[OpenAIProvider]:
    built = make(fake)
    yield built
    await built.aclose()


def ask(text: str = "hi", **fields: object) -> ChatRequest:
    return ChatRequest(model="gpt-test", messages=(ChatMessage("user", text),), **fields)  # type: ignore[arg-type]


async def test_text_usage_and_system_prompt_first(fake: FakeLLM, provider: OpenAIProvider) -> None:
    fake.push(Reply(text="Bonjour tout le monde", input_tokens=20, cache_read_tokens=30))

    out = await complete(provider, ask(system="You are terse."))

    assert out.text == "Bonjour tout le monde"
    # prompt_tokens (50) include the 30 cached ones; ours count them apart.
    assert out.usage == Usage(input_tokens=20, output_tokens=7, cache_read_tokens=30)
    assert (out.finish.reason, out.finish.provider, out.finish.model) == (
        "stop",
        "local",
        "gpt-test",
    )
    body = fake.requests[-1].body
    assert body["messages"][0] == {"role": "system", "content": "You are terse."}
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert fake.requests[-1].headers["Authorization"] == "Bearer sk-test"


async def test_history_and_tools_are_sent_in_chat_completions_shape(
    fake: FakeLLM, provider: OpenAIProvider
) -> None:
    call = ToolCall("call_1", "weather", '{"city": "Oslo"}')
    request = ChatRequest(
        model="gpt-test",
        system="sys",
        messages=(
            ChatMessage("user", "weather in Oslo?"),
            ChatMessage("assistant", "", tool_calls=(call,)),
            ChatMessage("tool", "-3 C, snow", tool_call_id="call_1", name="weather"),
        ),
        tools=(WEATHER,),
        max_tokens=256,
        temperature=0.2,
    )

    await complete(provider, request)

    body = fake.requests[-1].body
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "-3 C, snow"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Current weather for a city",
                "parameters": WEATHER.parameters,
            },
        }
    ]
    # A compatible server gets max_tokens (the official API would get max_completion_tokens).
    assert body["max_tokens"] == 256
    assert "max_completion_tokens" not in body
    assert body["temperature"] == 0.2


async def test_a_past_call_with_malformed_arguments_does_not_fail_later_turns(
    fake: FakeLLM, provider: OpenAIProvider
) -> None:
    # a model wrote a call whose arguments are no JSON (cut off, or simply wrong); the tool
    # answered with an error, and the conversation goes on. Ollama, vLLM and llama.cpp parse
    # a past call's arguments and refuse the whole request when they cannot.
    broken = ToolCall("call_1", "weather", '{"city": "Os')
    empty = ToolCall("call_2", "weather", "  ")
    request = ChatRequest(
        model="gpt-test",
        messages=(
            ChatMessage("user", "weather in Oslo?"),
            ChatMessage("assistant", "", tool_calls=(broken, empty)),
            ChatMessage("tool", "error: arguments are not valid JSON", tool_call_id="call_1"),
            ChatMessage("tool", "error: city is required", tool_call_id="call_2"),
            ChatMessage("user", "try again"),
        ),
        tools=(WEATHER,),
    )
    fake.push("Oslo: -3 C.")

    assert (await complete(provider, request)).text == "Oslo: -3 C."

    sent = fake.requests[-1].body["messages"][1]["tool_calls"]
    arguments = [json.loads(call["function"]["arguments"]) for call in sent]
    # what the model wrote stays visible to it
    assert arguments == [{"_raw_arguments": '{"city": "Os'}, {}]


def chunk(delta: dict[str, object], finish: str | None = None) -> str:
    """One server-sent event of a chat-completions stream."""
    body = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n"


async def test_parallel_calls_sent_whole_without_an_index_stay_apart(
    fake: FakeLLM, provider: OpenAIProvider
) -> None:
    # Gemini's OpenAI-compatible stream: each parallel call whole in its own chunk, with an
    # id but no index, and finish_reason "stop" after them
    def whole(call_id: str, city: str) -> dict[str, object]:
        function = {"name": "weather", "arguments": json.dumps({"city": city})}
        return {"tool_calls": [{"id": call_id, "type": "function", "function": function}]}

    stream = (
        chunk({"role": "assistant", **whole("function-call-1", "Oslo")})
        + chunk(whole("function-call-2", "Lima"))
        + chunk({}, "stop")
        + "data: [DONE]\n\n"
    )
    fake.push(Reply(raw_body=stream.encode(), content_type="text/event-stream"))

    events = [e async for e in provider.stream(ask(tools=(WEATHER,)))]

    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert [(c.id, c.parsed_arguments()) for c in calls] == [
        ("function-call-1", {"city": "Oslo"}),
        ("function-call-2", {"city": "Lima"}),
    ]
    assert events[-1].reason == "tool_calls"  # type: ignore[union-attr]


@pytest.mark.parametrize("named_again", [False, True], ids=["named once", "name repeated"])
async def test_fragments_of_one_call_each_with_a_new_id_stay_one_call(
    fake: FakeLLM, provider: OpenAIProvider, named_again: bool
) -> None:
    # Poolside and older mlx-openai-server send a different id in every fragment of one call;
    # a server may also repeat the function's name before any arguments came
    def fragment(call_id: str, function: dict[str, str]) -> dict[str, object]:
        part = {"index": 0, "id": call_id, "type": "function", "function": function}
        return {"tool_calls": [part]}

    again = {"name": "weather"} if named_again else {}
    stream = (
        chunk({"role": "assistant", **fragment("A", {"name": "weather", "arguments": ""})})
        + chunk(fragment("B", {**again, "arguments": '{"city":'}))
        + chunk(fragment("C", {"arguments": ' "Oslo"}'}))
        + chunk({}, "tool_calls")
        + "data: [DONE]\n\n"
    )
    fake.push(Reply(raw_body=stream.encode(), content_type="text/event-stream"))

    events = [e async for e in provider.stream(ask(tools=(WEATHER,)))]

    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert [(c.id, c.name, c.parsed_arguments()) for c in calls] == [
        ("A", "weather", {"city": "Oslo"})
    ]


async def test_tool_call_fragments_are_joined_into_one_event(
    fake: FakeLLM, provider: OpenAIProvider
) -> None:
    first = ToolCall("call_a", "weather", json.dumps({"city": "Reykjavik", "units": "metric"}))
    second = ToolCall("call_b", "weather", json.dumps({"city": "Lima"}))
    fake.push(Reply(text="Checking.", tool_calls=[first, second]))

    events = [e async for e in provider.stream(ask(tools=(WEATHER,)))]

    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert calls == [first, second]
    assert calls[0].parsed_arguments() == {"city": "Reykjavik", "units": "metric"}
    assert events[-1].reason == "tool_calls"  # type: ignore[union-attr]


async def test_stream_ending_mid_tool_call_emits_no_tool_call(
    fake: FakeLLM, provider: OpenAIProvider
) -> None:
    call = ToolCall("call_a", "weather", json.dumps({"city": "Reykjavik", "units": "metric"}))
    # role chunk, tool head, two argument pieces, then the connection drops
    fake.push(Reply(tool_calls=[call], reset_after_chunks=4))
    seen: list[object] = []

    with pytest.raises(ProviderHTTPError) as caught:
        async for event in provider.stream(ask()):
            seen.append(event)

    assert caught.value.code == "connection"
    assert not any(isinstance(e, ToolCallEvent) for e in seen)


async def test_server_refusing_stream_options_is_retried_once_and_remembered(
    fake: FakeLLM, provider: OpenAIProvider
) -> None:
    fake.rejects_stream_options = True
    fake.push("first", "second")

    assert (await complete(provider, ask())).text == "first"
    assert (await complete(provider, ask())).text == "second"

    sent = [r.body.get("stream_options") for r in fake.requests]
    assert sent == [{"include_usage": True}, None, None]


@pytest.mark.parametrize(
    ("reply", "kind", "status", "code", "retryable"),
    [
        (Reply.error(429, retry_after=7), ProviderHTTPError, 429, "rate_limit_exceeded", True),
        (Reply.error(500), ProviderHTTPError, 500, "server_error", True),
        (Reply.error(503), ProviderHTTPError, 503, "server_error", True),
        (Reply.error(401), ProviderHTTPError, 401, "invalid_api_key", False),
        (Reply.error(400), ProviderHTTPError, 400, "invalid_value", False),
        (Reply.context_length(), ContextTooLong, 400, "context_length_exceeded", False),
        (Reply.insufficient_quota(402), ProviderHTTPError, 402, "billing", False),
        (Reply.insufficient_quota(429), ProviderHTTPError, 429, "billing", False),
    ],
)
async def test_http_errors_map_to_our_error_tree(
    fake: FakeLLM,
    provider: OpenAIProvider,
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
        assert error.retry_after == 7.0


async def test_error_event_inside_the_stream_is_typed(
    fake: FakeLLM, provider: OpenAIProvider
) -> None:
    fake.push(Reply(text="partial answer", stream_error="rate_limit", stream_error_after_chunks=2))

    with pytest.raises(ProviderHTTPError) as caught:
        await complete(provider, ask())

    assert caught.value.status == 429


async def test_idle_gap_between_chunks_is_a_typed_timeout(fake: FakeLLM) -> None:
    provider = make(fake, idle_timeout_s=0.1)
    fake.push(Reply(text="slow words here", chunk_delay_s=0.4))
    try:
        with pytest.raises(ProviderTimeout) as caught:
            await complete(provider, ask())
    finally:
        await provider.aclose()

    assert (caught.value.phase, caught.value.seconds) == ("idle", 0.1)


async def test_first_token_timeout_covers_a_server_that_never_answers(fake: FakeLLM) -> None:
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


async def test_refused_key_rotates_to_the_next_and_sticks(fake: FakeLLM) -> None:
    provider = make(fake, keys=["sk-one", "sk-two"])
    fake.push(Reply.error(401), "with the second key", "again")
    try:
        first = await complete(provider, ask())
        second = await complete(provider, ask())
    finally:
        await provider.aclose()

    assert (first.text, second.text) == ("with the second key", "again")
    keys = [r.headers["Authorization"] for r in fake.requests]
    assert keys == ["Bearer sk-one", "Bearer sk-two", "Bearer sk-two"]


async def test_rate_limited_key_fails_this_call_and_rotates_for_the_next(fake: FakeLLM) -> None:
    provider = make(fake, keys=["sk-one", "sk-two"])
    fake.push(Reply.error(429, retry_after=30))
    try:
        with pytest.raises(ProviderHTTPError):
            await complete(provider, ask())
        await complete(provider, ask())
    finally:
        await provider.aclose()

    keys = [r.headers["Authorization"] for r in fake.requests]
    assert keys == ["Bearer sk-one", "Bearer sk-two"]


async def test_every_key_refused_surfaces_the_401(fake: FakeLLM) -> None:
    provider = make(fake, keys=["sk-one", "sk-two"])
    fake.push(Reply.error(401), Reply.error(401))
    try:
        with pytest.raises(ProviderHTTPError) as caught:
            await complete(provider, ask())
    finally:
        await provider.aclose()

    assert caught.value.status == 401
    assert len(fake.requests) == 2


async def test_one_connection_pool_per_provider_not_per_request_or_key(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiohttp

    made: list[object] = []
    real = aiohttp.ClientSession

    def counting(*args: object, **kwargs: object) -> aiohttp.ClientSession:
        made.append(kwargs.get("connector"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(aiohttp, "ClientSession", counting)
    provider = make(fake, keys=["sk-one", "sk-two"])
    fake.push(Reply.error(401))  # the first key is refused: the second takes over
    try:
        for _ in range(3):
            await complete(provider, ask())
    finally:
        await provider.aclose()

    assert len(made) == 1
    keys = [r.headers["Authorization"] for r in fake.requests]
    assert keys == ["Bearer sk-one", "Bearer sk-two", "Bearer sk-two", "Bearer sk-two"]


def test_a_streamed_turn_loads_no_sdk() -> None:
    code = (
        "import asyncio, sys\n"
        "from bot.providers.base import ChatMessage, ChatRequest, complete\n"
        "from bot.providers.config import ProviderConfig\n"
        "from bot.providers.openai import OpenAIProvider\n"
        "from tests.fakes.llm import FakeLLM\n"
        "async def main():\n"
        "    async with FakeLLM() as fake:\n"
        "        config = ProviderConfig(base_url=fake.base_url + '/v1')\n"
        "        provider = OpenAIProvider('local', config, ['sk-test'])\n"
        "        await provider.warm_up()\n"
        "        request = ChatRequest(model='m', messages=(ChatMessage('user', 'hi'),))\n"
        "        assert (await complete(provider, request)).text\n"
        "        await provider.aclose()\n"
        "asyncio.run(main())\n"
        "loaded = [m for m in ('openai', 'anthropic', 'httpx2') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_probe_lists_models(fake: FakeLLM, provider: OpenAIProvider) -> None:
    await provider.probe()
    fake.models_status = 503

    with pytest.raises(ProviderHTTPError) as caught:
        await provider.probe()

    assert caught.value.status == 503
    assert [r.path for r in fake.requests] == ["/v1/models", "/v1/models"]


def test_importing_the_providers_package_loads_no_sdk() -> None:
    code = (
        "import sys, bot.providers.build, bot.providers.failover, bot.providers.testing\n"
        "loaded = [m for m in ('openai', 'anthropic') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_default_text_reply(fake: FakeLLM, provider: OpenAIProvider) -> None:
    assert (await complete(provider, ask())).text == DEFAULT_TEXT


async def test_streams_and_probes_go_through_the_proxy_from_the_environment(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's client (the probe) takes HTTP_PROXY from the environment; a stream that did
    not would go around the proxy, and in a network reachable only through it every turn
    would fail while the probes said the provider was up."""
    provider = make(fake)
    async with environment_proxy(monkeypatch) as proxy:
        try:
            fake.push(Reply(text="through the proxy"))
            out = await complete(provider, ask())
            await provider.probe()
        finally:
            await provider.aclose()
    assert out.text == "through the proxy"
    assert f"{fake.base_url}/v1/chat/completions" in proxy.targets
    assert f"{fake.base_url}/v1/models" in proxy.targets


async def test_a_proxy_variable_the_streams_cannot_use_is_a_build_error_naming_it(
    fake: FakeLLM,
) -> None:
    environ = {"OPENAI_API_KEY": "sk-test", "HTTPS_PROXY": "https://user:s3cret@proxy.example:3128"}
    config = ProviderConfig(base_url=fake.base_url + "/v1", api_key_env="OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="HTTPS_PROXY is a https:// proxy") as caught:
        make_provider("local", config, environ=environ)
    assert "s3cret" not in str(caught.value)


async def test_the_proxy_is_looked_up_once_not_in_thread_hops_for_every_stream(
    fake: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every stream still goes through the environment's proxy, but the lookup (which may read
    ~/.netrc, so off the loop) is made once per address: aiohttp's trust_env made it in two thread
    hops per request, a third of a turn's CPU under load."""
    provider = make(fake)
    async with environment_proxy(monkeypatch) as proxy:
        try:
            texts = []
            with thread_hops(monkeypatch) as hops:
                for n in range(5):
                    fake.push(Reply(text=f"through the proxy {n}"))
                    texts.append((await complete(provider, ask())).text)
        finally:
            await provider.aclose()
    assert texts == [f"through the proxy {n}" for n in range(5)]
    assert proxy.targets.count(f"{fake.base_url}/v1/chat/completions") == 5
    assert len(hops) == 1, hops  # the one lookup, not two hops for each of the five streams
