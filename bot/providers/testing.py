"""Providers for tests and dry runs, and a clock that moves only when told.

    provider = ScriptedProvider(["Hello there", [ToolCall("c1", "remind", '{"in": "10m"}')]])
    provider = FunctionProvider(lambda request: f"echo: {request.messages[-1].content}")

Both record every ChatRequest in `.requests` and end each answer with a usage estimate and a
Finish, like the real providers.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import aclosing
from typing import TypeAlias

from bot.providers.base import (
    ChatEvent,
    ChatRequest,
    Finish,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    Usage,
    UsageEvent,
)

#: what one model call answers: text (streamed word by word), tool calls, or raw events
Answer: TypeAlias = str | Sequence[ToolCall] | AsyncIterator[ChatEvent]
AnswerFn: TypeAlias = Callable[[ChatRequest], Answer | Awaitable[Answer]]
#: one scripted call: an answer, an exception to raise, or a function of the request
ScriptItem: TypeAlias = str | Sequence[ToolCall] | BaseException | AnswerFn


def estimate_tokens(text: str) -> int:
    """About four characters a token: good enough for budgets in tests."""
    return (len(text) + 3) // 4


def _input_tokens(request: ChatRequest) -> int:
    text = request.system + "".join(m.content for m in request.messages)
    return estimate_tokens(text)


async def _answer_events(
    answer: Answer, request: ChatRequest, provider: str
) -> AsyncGenerator[ChatEvent, None]:
    if isinstance(answer, AsyncIterator):
        # Raw events pass through; what the function left out is added.
        output, reason, usage_seen = 0, "stop", False
        async for event in answer:
            if isinstance(event, Finish):
                yield _own_finish(event, provider, request.model)
                return
            if isinstance(event, TextDelta):
                output += estimate_tokens(event.text)
            elif isinstance(event, ToolCallEvent):
                reason = "tool_calls"
            usage_seen = usage_seen or isinstance(event, UsageEvent)
            yield event
        if usage_seen:
            yield Finish(reason, provider=provider, model=request.model)
            return
    elif isinstance(answer, str):
        for word in re.findall(r"\s*\S+", answer):
            yield TextDelta(word)
        output = estimate_tokens(answer)
        reason = "stop"
    else:
        for call in answer:
            yield ToolCallEvent(call)
        output = sum(estimate_tokens(call.name + call.arguments) for call in answer)
        reason = "tool_calls" if answer else "stop"
    yield UsageEvent(Usage(input_tokens=_input_tokens(request), output_tokens=output))
    yield Finish(reason, provider=provider, model=request.model)


def _own_finish(event: Finish, provider: str, model: str) -> Finish:
    return Finish(
        event.reason,
        provider=event.provider or provider,
        model=event.model or model,
        meta=event.meta,
    )


async def _resolve(fn: AnswerFn, request: ChatRequest) -> Answer:
    result = fn(request)
    if inspect.isawaitable(result):
        return await result
    return result


class ScriptedProvider:
    """Each call consumes the next scripted item; running out of script is a test failure."""

    def __init__(self, script: Iterable[ScriptItem], *, name: str = "scripted") -> None:
        self.name = name
        self._script: deque[ScriptItem] = deque(script)
        self.requests: list[ChatRequest] = []

    def add(self, *items: ScriptItem) -> None:
        self._script.extend(items)

    @property
    def remaining(self) -> int:
        return len(self._script)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        self.requests.append(request)
        if not self._script:
            raise AssertionError(
                f"{self.name}: script exhausted after {len(self.requests) - 1} calls"
            )
        item = self._script.popleft()
        if isinstance(item, BaseException):
            raise item
        answer = await _resolve(item, request) if callable(item) else item
        async with aclosing(_answer_events(answer, request, self.name)) as events:
            async for event in events:
                yield event


class FunctionProvider:
    """Answers every call with `fn(request)` (sync or async)."""

    def __init__(self, fn: AnswerFn, *, name: str = "function") -> None:
        self.name = name
        self._fn = fn
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        self.requests.append(request)
        answer = await _resolve(self._fn, request)
        async with aclosing(_answer_events(answer, request, self.name)) as events:
            async for event in events:
                yield event


class ManualClock:
    """A monotonic clock for breakers and deadlines that moves only when a test moves it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """A stand-in for asyncio.sleep: moves the clock instead of waiting."""
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)
