"""OpenAI and every OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio, OpenRouter).

Streaming chat completions through the official SDK's AsyncOpenAI, one client per key, with
retries off: retrying and failing over is the chain's job. The SDK is imported when the first
client is made, so configs that never name an OpenAI provider never load it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.errors import ProviderError, ProviderHTTPError
from bot.providers.base import (
    ChatEvent,
    ChatMessage,
    ChatRequest,
    Finish,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    Usage,
    UsageEvent,
)
from bot.providers.config import ProviderConfig
from bot.providers.remote import (
    ChunkTimer,
    KeyPool,
    SdkProvider,
    incomplete_stream,
    status_error,
    transport_error,
)

if TYPE_CHECKING:
    from openai import AsyncOpenAI, AsyncStream
    from openai.types.chat import (
        ChatCompletionChunk,
        ChatCompletionContentPartParam,
        ChatCompletionMessageParam,
        ChatCompletionToolParam,
    )

log = logging.getLogger(__name__)

_FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}
#: HTTP status for an error event inside a 200 stream, by its code
_STATUS_BY_STREAM_CODE = {
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "context_length_exceeded": 400,
    "invalid_request_error": 400,
    "server_error": 500,
}


class OpenAIProvider(SdkProvider["AsyncOpenAI"]):
    """A Provider over one OpenAI-compatible endpoint."""

    sdk_modules = ("openai", "openai.resources.chat", "openai._vendor.httpx_aiohttp")

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        api_keys: Sequence[str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.config = config
        self.base_url = config.resolved_base_url()
        self._keys: KeyPool[AsyncOpenAI] = KeyPool(api_keys, self._make_client, clock=clock)
        # The SDK is loaded by warm_up(), in the background once the gateway is up.
        self._check_sdk()
        # Some compatible servers refuse stream_options; learned on the first refusal.
        self._usage_in_stream = True
        # The official API wants max_completion_tokens; compatible servers know max_tokens.
        self._official = "api.openai.com" in self.base_url

    def _make_client(self, key: str) -> AsyncOpenAI:
        import openai

        cfg = self.config
        # The SDK's own read timeout is only a backstop behind our first-token/idle deadlines.
        read_s = max(cfg.first_token_timeout_s, cfg.idle_timeout_s) + 5.0
        timeout = openai.Timeout(read_s, connect=cfg.connect_timeout_s)
        # The SDK's aiohttp transport: about 40 % less CPU per streamed request than its httpx
        # one, and a connection pool that stays cheap with thousands of open streams.
        client = openai.AsyncOpenAI(
            api_key=key,
            base_url=self.base_url,
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultAioHttpClient(timeout=timeout),
        )
        _ = client.chat.completions  # the SDK imports resource modules on first access
        return client

    async def _stream_once(
        self, client: AsyncOpenAI, request: ChatRequest
    ) -> AsyncGenerator[ChatEvent, None]:
        import openai

        timer = ChunkTimer(self.config.first_token_timeout_s, self.config.idle_timeout_s)
        answer = _Answer()
        try:
            response = await self._open(client, request, timer)
            try:
                while True:
                    try:
                        chunk = await timer.chunk(anext(response))
                    except StopAsyncIteration:
                        break
                    for event in answer.feed(chunk):
                        yield event
            finally:
                await response.close()
        except openai.APIStatusError as exc:
            raise _status_error(exc) from exc
        except openai.APIError as exc:  # a connection error, or an error event inside the stream
            if answer.finish_reason is None:
                raise _stream_error(exc, timer, self.config.connect_timeout_s) from exc
            log.debug("provider %s: stream broke after the finish reason: %s", self.name, exc)
        except ProviderError:
            if answer.finish_reason is None:
                raise
        if answer.finish_reason is None:
            raise incomplete_stream()
        for event in answer.finish(self.name, request.model):
            yield event

    async def _open(
        self, client: AsyncOpenAI, request: ChatRequest, timer: ChunkTimer
    ) -> AsyncStream[ChatCompletionChunk]:
        import openai

        tokens = request.max_tokens or openai.omit
        # Messages and tools go in `extra_body`, which the SDK sends as they are: they are
        # already plain JSON, and the SDK's type-directed walk over `messages` costs ~0.2 ms
        # per history message on every turn (most of a turn's own time with a long history).
        payload: dict[str, Any] = {"messages": to_openai_messages(request)}
        tools = to_openai_tools(request)
        if tools:
            payload["tools"] = tools
        try:
            return await timer.request(
                client.chat.completions.create(
                    model=request.model,
                    messages=(),
                    extra_body=payload,
                    temperature=openai.omit if request.temperature is None else request.temperature,
                    max_tokens=openai.omit if self._official else tokens,
                    max_completion_tokens=tokens if self._official else openai.omit,
                    stream=True,
                    stream_options={"include_usage": True}
                    if self._usage_in_stream
                    else openai.omit,
                )
            )
        except openai.APIStatusError as exc:
            if not (self._usage_in_stream and _refuses_stream_options(exc)):
                raise
        log.info("provider %s refuses stream_options; streaming without usage", self.name)
        self._usage_in_stream = False
        return await self._open(client, request, timer)

    def _probe_error(self, exc: Exception) -> ProviderError | None:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return _status_error(exc)
        if isinstance(exc, openai.APIError):
            seconds = self.config.connect_timeout_s + 5.0
            return _connection_failed(exc) or transport_error(
                exc, connect_s=self.config.connect_timeout_s, phase="first_token", seconds=seconds
            )
        return None


@dataclass(slots=True)
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Answer:
    """One streamed answer as it arrives: text passes through, tool calls are held until done."""

    tool_calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Usage | None = None

    def feed(self, chunk: ChatCompletionChunk) -> Iterator[ChatEvent]:
        if chunk.usage is not None:
            details = chunk.usage.prompt_tokens_details
            cached = (details.cached_tokens or 0) if details is not None else 0
            # Our input_tokens exclude cache reads, as Anthropic reports them.
            self.usage = Usage(
                input_tokens=max(chunk.usage.prompt_tokens - cached, 0),
                output_tokens=chunk.usage.completion_tokens,
                cache_read_tokens=cached,
            )
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                yield TextDelta(delta.content)
            for part in delta.tool_calls or ():
                call = self.tool_calls.setdefault(part.index, _ToolCallParts())
                if part.id and not call.id:
                    call.id = part.id
                if part.function is not None:
                    if part.function.name and not call.name:
                        call.name = part.function.name
                    if part.function.arguments:
                        call.arguments.append(part.function.arguments)
            if choice.finish_reason is not None and self.finish_reason is None:
                self.finish_reason = choice.finish_reason
                yield from self._complete_tool_calls()

    def _complete_tool_calls(self) -> Iterator[ToolCallEvent]:
        for index in sorted(self.tool_calls):
            parts = self.tool_calls[index]
            arguments = "".join(parts.arguments)
            if self.finish_reason == "length" and not _is_json(arguments):
                log.warning("dropping tool call %r cut off by the output limit", parts.name)
                continue
            call_id = parts.id or f"call_{uuid.uuid4().hex[:24]}"
            yield ToolCallEvent(ToolCall(id=call_id, name=parts.name, arguments=arguments))

    def finish(self, provider: str, model: str) -> Iterator[ChatEvent]:
        if self.usage is not None:
            yield UsageEvent(self.usage)
        raw = self.finish_reason or "stop"
        reason = "tool_calls" if self.tool_calls else _FINISH_REASONS.get(raw, "stop")
        yield Finish(reason=reason, provider=provider, model=model, meta={"finish_reason": raw})


def _is_json(text: str) -> bool:
    try:
        json.loads(text or "{}")
    except ValueError:
        return False
    return True


def to_openai_messages(request: ChatRequest) -> list[ChatCompletionMessageParam]:
    """Our history in chat-completions form, the system prompt first."""
    out: list[ChatCompletionMessageParam] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for message in request.messages:
        if message.role == "system":
            out.append({"role": "system", "content": message.content})
        elif message.role == "user" and message.images:
            out.append({"role": "user", "content": _openai_user_parts(message)})
        elif message.role == "user":
            out.append({"role": "user", "content": message.content})
        elif message.role == "tool":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": message.tool_call_id or "",
                    "content": message.content,
                }
            )
        elif message.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": message.content or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": call.arguments or "{}"},
                        }
                        for call in message.tool_calls
                    ],
                }
            )
        else:
            out.append({"role": "assistant", "content": message.content})
    return out


def _openai_user_parts(message: ChatMessage) -> list[ChatCompletionContentPartParam]:
    """Text, then each image as a data URL (the chat-completions way to send pixels)."""
    parts: list[ChatCompletionContentPartParam] = []
    if message.content:
        parts.append({"type": "text", "text": message.content})
    for image in message.images:
        url = f"data:{image.mime};base64,{image.base64()}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def to_openai_tools(request: ChatRequest) -> list[ChatCompletionToolParam]:
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in request.tools
    ]


def _error_fields(body: object) -> tuple[str | None, str]:
    """(code, message) from an OpenAI-style error body: {"error": {...}} or the object itself."""
    if isinstance(body, dict):
        inner: Any = body.get("error", body)
        if isinstance(inner, dict):
            code = inner.get("code") or inner.get("type")
            message = inner.get("message")
            return (str(code) if code else None, str(message) if message else "")
        if isinstance(inner, str):
            return None, inner
    return None, str(body) if body else ""


def _status_error(exc: Any) -> ProviderHTTPError:
    code, message = _error_fields(exc.body)
    return status_error(
        exc.status_code, message or exc.message, code=code, headers=dict(exc.response.headers)
    )


def _stream_error(exc: Any, timer: ChunkTimer, connect_s: float) -> ProviderError:
    import openai

    if isinstance(exc, openai.APIConnectionError):
        return _connection_failed(exc) or transport_error(
            exc, connect_s=connect_s, phase=timer.phase(), seconds=timer.seconds()
        )
    # An error event inside a 200 stream (OpenRouter and some servers send these).
    code, message = _error_fields(exc.body)
    known = _STATUS_BY_STREAM_CODE.get(code or "", 500)
    status = int(code) if code and code.isdigit() else known
    return status_error(status, message or exc.message, code=code)


def _connection_failed(exc: BaseException) -> ProviderHTTPError | None:
    """The aiohttp transport files every failed connection under ConnectTimeout; one that was
    refused or dropped (not slow) is a connection error, as it is over httpx."""
    import aiohttp

    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, aiohttp.ServerTimeoutError | TimeoutError):
            return None
        if isinstance(cause, aiohttp.ClientConnectionError):
            detail = type(cause).__name__
            return ProviderHTTPError(
                0, f"connection failed ({detail})", retryable=True, code="connection"
            )
        cause = cause.__cause__
    return None


def _refuses_stream_options(exc: Any) -> bool:
    return exc.status_code in (400, 422) and "stream_options" in f"{exc.message} {exc.body}"
