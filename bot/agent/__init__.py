"""The agent turn: context in, a stream of events out, tools called in a bounded loop.

The agent is pure: it does not store anything. The gateway persists what `TurnDone` carries,
and the next request re-sends it, so every message the turn adds is redacted here first: the
model's text, the tool-call arguments it wrote, and the tool results. Only the streamed
deltas leave raw; the reply path runs them through its own stream redactor.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from bot.errors import DecapodError, ProviderError
from bot.providers.base import (
    ChatMessage,
    ChatRequest,
    Finish,
    Provider,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    Usage,
    UsageEvent,
    json_text,
)
from bot.tools import ToolContext, ToolPolicy, ToolRegistry
from bot.tools.turn_clock import TurnClock

Redact = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class AgentSettings:
    system_prompt: str
    max_output_tokens: int | None = 1024
    temperature: float | None = None
    max_tool_iterations: int = 8
    turn_deadline_s: float = 120.0


@dataclass(frozen=True, slots=True)
class ToolStarted:
    call: ToolCall


@dataclass(slots=True)
class TurnResult:
    #: messages the turn added after the user's: assistant replies and tool results
    messages: list[ChatMessage] = field(default_factory=list)
    text: str = ""
    usage: Usage = field(default_factory=Usage)
    provider: str = ""
    model: str = ""
    #: ok | interrupted | length (cut off by the output limit) | max_iterations | timeout |
    #: error
    outcome: str = "ok"
    error: BaseException | None = None
    latency_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class TurnDone:
    result: TurnResult


AgentEvent = TextDelta | ToolStarted | TurnDone


class Agent:
    def __init__(
        self,
        provider: Provider,
        tools: ToolRegistry,
        settings: AgentSettings,
        *,
        policy: ToolPolicy | None = None,
        redact: Redact,
    ) -> None:
        if not callable(redact):
            raise TypeError("Agent needs a redactor: redact must be a function str -> str")
        self.provider = provider
        self.tools = tools
        self.settings = settings
        self.policy = policy or ToolPolicy()
        self.redact = redact

    def system_prompt(self, summary: str = "", extra: str = "", skills: str = "") -> str:
        parts = [self.settings.system_prompt]
        if skills:
            parts.append(skills)
        if summary:
            parts.append(f"Summary of the earlier conversation:\n{summary}")
        if extra:
            parts.append(extra)
        return "\n\n".join(parts)

    async def run(
        self,
        history: list[ChatMessage],
        user: ChatMessage,
        ctx: ToolContext,
        *,
        summary: str = "",
        extra_system: str = "",
        provider: Provider | None = None,
        max_output_tokens: int | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Run one turn (with `provider` instead of the agent's own, e.g. the chain a
        person chose; `max_output_tokens`: what all of the run's model calls together may
        write, e.g. a check-in's cap).
        Always ends with exactly one TurnDone, whatever failed."""
        provider = provider or self.provider
        started = time.perf_counter()
        result = TurnResult()
        if any(m.role == "tool" and self.tools.is_untrusted(m.name) for m in history):
            # an earlier turn's outside content is still in the context this turn sends
            ctx.tainted = True
        messages = [*history, user]
        offered = self.tools.available(ctx, self.policy)
        specs = tuple(t.spec for t in offered)
        rules = dict.fromkeys(t.guidance for t in offered if t.guidance)
        skills = ctx.deps.skills  # the set this turn started with, whatever reloads meanwhile
        system = self.system_prompt(
            summary,
            "\n\n".join(p for p in (extra_system, *rules) if p),
            skills.current.prompt_block if skills else "",
        )
        hooks = ctx.deps.hooks
        s = self.settings
        try:
            async with asyncio.timeout(s.turn_deadline_s) as deadline:
                ctx.turn_clock = TurnClock(deadline, s.turn_deadline_s)
                for step in range(s.max_tool_iterations):
                    left = _left(max_output_tokens, result.usage.output_tokens)
                    if left is not None and left <= 0:
                        result.outcome = "max_iterations"  # the run's token cap is spent
                        break
                    request = ChatRequest(
                        model="",
                        messages=tuple(messages),
                        system=system,
                        tools=specs,
                        max_tokens=_lower(s.max_output_tokens, left),
                        temperature=s.temperature,
                    )
                    if hooks is not None:
                        hooks.before_model(ctx, step=step, messages=len(messages), tools=len(specs))
                    calls: list[ToolCall] = []
                    parts: list[str] = []
                    sep = "\n\n" if result.text else ""  # between answers around tool calls
                    finish = Finish()
                    async for event in provider.stream(request):
                        if isinstance(event, TextDelta):
                            if sep and not parts:
                                yield TextDelta(sep)
                                result.text += sep
                            parts.append(event.text)
                            result.text += event.text
                            yield event
                        elif isinstance(event, ToolCallEvent):
                            calls.append(event.call)
                        elif isinstance(event, UsageEvent):
                            result.usage = result.usage + event.usage
                        else:
                            finish = event
                    result.provider, result.model = finish.provider, finish.model
                    interrupted = finish.reason == "interrupted"
                    reply = ChatMessage(
                        "assistant",
                        self.redact("".join(parts)),
                        () if interrupted else tuple(self._redact_call(c) for c in calls),
                    )
                    messages.append(reply)
                    result.messages.append(reply)
                    if interrupted:
                        result.outcome = "interrupted"
                        break
                    if not calls:
                        if finish.reason == "length":
                            result.outcome = "length"
                        break
                    for call in calls:
                        yield ToolStarted(call)
                        # runs with the arguments as written; the transcript keeps them redacted
                        done = await self.tools.call(call, ctx, self.policy)
                        msg = ChatMessage(
                            "tool", self.redact(done.content), tool_call_id=call.id, name=call.name
                        )
                        messages.append(msg)
                        result.messages.append(msg)
                else:
                    result.outcome = "max_iterations"
        except TimeoutError as exc:
            result.outcome, result.error = "timeout", exc
        except (ProviderError, DecapodError) as exc:
            result.outcome, result.error = "error", exc
        finally:
            ctx.turn_clock = None
        result.latency_ms = (time.perf_counter() - started) * 1000
        yield TurnDone(result)

    def _redact_call(self, call: ToolCall) -> ToolCall:
        """The call with every string in its arguments redacted; the JSON stays valid, since
        a provider may parse it when the transcript is sent again."""
        try:
            parsed = json.loads(call.arguments)
        except ValueError:
            return replace(call, arguments=self.redact(call.arguments))
        cleaned = _redact_strings(parsed, self.redact)
        if cleaned == parsed:
            return call  # unchanged text keeps the model's own formatting
        return replace(call, arguments=json_text(cleaned))


def _left(cap: int | None, written: int) -> int | None:
    return None if cap is None else cap - written


def _lower(configured: int | None, cap: int | None) -> int | None:
    if cap is None or configured is None:
        return cap if configured is None else configured
    return min(configured, cap)


def _redact_strings(value: Any, redact: Redact) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_strings(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: _redact_strings(v, redact) for k, v in value.items()}
    return value
