"""ScriptedProvider, FunctionProvider and ManualClock: the providers shipped for tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.errors import ProviderHTTPError
from bot.providers.base import (
    ChatEvent,
    ChatMessage,
    ChatRequest,
    Finish,
    Provider,
    TextDelta,
    ToolCall,
    Usage,
    UsageEvent,
    complete,
)
from bot.providers.testing import FunctionProvider, ManualClock, ScriptedProvider

REQUEST = ChatRequest(model="m", messages=(ChatMessage("user", "what time is it?"),))
CALL = ToolCall("c1", "current_time", '{"zone": "UTC"}')


async def test_scripted_text_streams_word_by_word_with_usage_and_finish() -> None:
    provider = ScriptedProvider(["It is noon."])

    events = [e async for e in provider.stream(REQUEST)]

    assert events[:3] == [TextDelta("It"), TextDelta(" is"), TextDelta(" noon.")]
    assert events[3] == UsageEvent(Usage(input_tokens=4, output_tokens=3))
    assert events[4] == Finish("stop", provider="scripted", model="m")
    assert provider.requests == [REQUEST]


async def test_scripted_tool_calls_exceptions_and_callables_in_order() -> None:
    provider = ScriptedProvider(
        [
            [CALL],
            ProviderHTTPError(503, "down"),
            lambda request: f"you said: {request.messages[-1].content}",
        ]
    )

    first = await complete(provider, REQUEST)
    with pytest.raises(ProviderHTTPError):
        await complete(provider, REQUEST)
    third = await complete(provider, REQUEST)

    assert (first.tool_calls, first.finish.reason) == ([CALL], "tool_calls")
    assert third.text == "you said: what time is it?"
    assert len(provider.requests) == 3
    assert provider.remaining == 0


async def test_scripted_async_callable_and_running_out() -> None:
    async def answer(request: ChatRequest) -> str:
        return "async answer"

    provider = ScriptedProvider([answer])
    provider.add("added later")

    assert (await complete(provider, REQUEST)).text == "async answer"
    assert (await complete(provider, REQUEST)).text == "added later"
    with pytest.raises(AssertionError, match="script exhausted after 2 calls"):
        await complete(provider, REQUEST)


async def test_function_provider_sync_async_and_raw_events() -> None:
    def sync(request: ChatRequest) -> str:
        return "sync"

    async def asynchronous(request: ChatRequest) -> list[ToolCall]:
        return [CALL]

    def raw(request: ChatRequest) -> AsyncIterator[ChatEvent]:
        async def events() -> AsyncIterator[ChatEvent]:
            yield TextDelta("raw ")
            yield TextDelta("events")

        return events()

    assert (await complete(FunctionProvider(sync), REQUEST)).text == "sync"
    assert (await complete(FunctionProvider(asynchronous), REQUEST)).tool_calls == [CALL]
    out = await complete(FunctionProvider(raw, name="raw"), REQUEST)
    assert out.text == "raw events"
    assert out.usage.output_tokens > 0  # estimated when the events carry none
    assert (out.finish.provider, out.finish.model) == ("raw", "m")


async def test_function_provider_keeps_a_finish_it_was_given() -> None:
    def raw(request: ChatRequest) -> AsyncIterator[ChatEvent]:
        async def events() -> AsyncIterator[ChatEvent]:
            yield UsageEvent(Usage(1, 2))
            yield Finish("length")

        return events()

    provider = FunctionProvider(raw)
    events = [e async for e in provider.stream(REQUEST)]

    assert events == [UsageEvent(Usage(1, 2)), Finish("length", provider="function", model="m")]
    assert provider.requests == [REQUEST]


def test_they_satisfy_the_provider_protocol() -> None:
    assert isinstance(ScriptedProvider([]), Provider)
    assert isinstance(FunctionProvider(lambda r: ""), Provider)


async def test_manual_clock_moves_only_when_told() -> None:
    clock = ManualClock(start=10.0)
    assert clock() == 10.0
    clock.advance(2.5)
    await clock.sleep(1.5)
    assert clock() == 14.0
