"""Anthropic's Messages API through the official SDK's AsyncAnthropic.

Streaming with tool use: a tool_use block's input arrives as input_json_delta fragments and
becomes a ToolCallEvent only once the message has finished. Our history is mapped to Anthropic's
shape: the system prompt apart, tool results as user messages of tool_result blocks, and
consecutive messages of one role merged. The SDK is imported when the first client is made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

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
    from anthropic import AsyncAnthropic, AsyncStream
    from anthropic.types import (
        ContentBlockParam,
        MessageParam,
        RawMessageStreamEvent,
        TextBlockParam,
        ToolParam,
    )

log = logging.getLogger(__name__)

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
}
#: HTTP status for an error event inside a 200 stream, by its error type
_STATUS_BY_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicProvider(SdkProvider["AsyncAnthropic"]):
    """A Provider over the Anthropic Messages API (or a server that speaks it)."""

    sdk_modules = ("anthropic",)

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
        # The SDK appends /v1 itself.
        base_url = config.resolved_base_url()
        self.base_url = base_url.removesuffix("/v1")
        self._keys: KeyPool[AsyncAnthropic] = KeyPool(api_keys, self._make_client, clock=clock)
        # The SDK is loaded by warm_up(), in the background once the gateway is up.
        self._check_sdk()

    def _make_client(self, key: str) -> AsyncAnthropic:
        import anthropic

        cfg = self.config
        # The SDK's own read timeout is only a backstop behind our first-token/idle deadlines.
        read_s = max(cfg.first_token_timeout_s, cfg.idle_timeout_s) + 5.0
        timeout = anthropic.Timeout(read_s, connect=cfg.connect_timeout_s)
        return anthropic.AsyncAnthropic(
            api_key=key, base_url=self.base_url, max_retries=0, timeout=timeout
        )

    async def _stream_once(
        self, client: AsyncAnthropic, request: ChatRequest
    ) -> AsyncGenerator[ChatEvent, None]:
        import anthropic
        import httpx2

        cfg = self.config
        timer = ChunkTimer(cfg.first_token_timeout_s, cfg.idle_timeout_s)
        answer = _Answer()
        try:
            response = await timer.request(self._open(client, request))
            try:
                # Read to the end, past message_stop, so the connection can be reused.
                while True:
                    try:
                        event = await timer.chunk(anext(response))
                    except StopAsyncIteration:
                        break
                    for out in answer.feed(event):
                        yield out
            finally:
                await response.close()
        except anthropic.APIStatusError as exc:
            raise _status_error(exc) from exc
        except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
            if answer.stop_reason is None:
                raise transport_error(
                    exc,
                    connect_s=cfg.connect_timeout_s,
                    phase=timer.phase(),
                    seconds=timer.seconds(),
                ) from exc
            log.debug("provider %s: stream broke after the stop reason: %s", self.name, exc)
        except ProviderError:
            if answer.stop_reason is None:
                raise
        if answer.stop_reason is None:
            raise incomplete_stream()
        for out in answer.finish(self.name, request.model):
            yield out

    async def _open(
        self, client: AsyncAnthropic, request: ChatRequest
    ) -> AsyncStream[RawMessageStreamEvent]:
        import anthropic

        # No temperature: this SDK's Messages API takes none (sampling is fixed per model).
        system, messages = to_anthropic_messages(request)
        return await client.messages.create(
            model=request.model,
            max_tokens=request.max_tokens or self.config.max_output_tokens,
            messages=messages,
            system=system or anthropic.omit,
            tools=to_anthropic_tools(request) or anthropic.omit,
            stream=True,
        )

    def _probe_error(self, exc: Exception) -> ProviderError | None:
        import anthropic

        if isinstance(exc, anthropic.APIStatusError):
            return _status_error(exc)
        if isinstance(exc, anthropic.APIConnectionError):
            seconds = self.config.connect_timeout_s + 5.0
            return transport_error(
                exc, connect_s=self.config.connect_timeout_s, phase="first_token", seconds=seconds
            )
        return None


@dataclass(slots=True)
class _ToolUse:
    id: str
    name: str
    parts: list[str] = field(default_factory=list)
    complete: bool = False


@dataclass(slots=True)
class _Answer:
    """One streamed message as it arrives: text passes through, tool calls wait for the end."""

    tools: dict[int, _ToolUse] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None

    def feed(self, event: RawMessageStreamEvent) -> Iterator[ChatEvent]:
        if event.type == "message_start":
            usage = event.message.usage
            self.usage = Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_input_tokens or 0,
                cache_write_tokens=usage.cache_creation_input_tokens or 0,
            )
        elif event.type == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                self.tools[event.index] = _ToolUse(block.id, block.name)
            elif block.type == "text" and block.text:
                yield TextDelta(block.text)
        elif event.type == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta" and delta.text:
                yield TextDelta(delta.text)
            elif delta.type == "input_json_delta" and event.index in self.tools:
                self.tools[event.index].parts.append(delta.partial_json)
        elif event.type == "content_block_stop":
            if event.index in self.tools:
                self.tools[event.index].complete = True
        elif event.type == "message_delta":
            self.stop_reason = event.delta.stop_reason or "end_turn"
            # message_delta carries cumulative counts; a field it leaves out keeps its value.
            totals = event.usage
            self.usage = Usage(
                input_tokens=_pick(totals.input_tokens, self.usage.input_tokens),
                output_tokens=totals.output_tokens,
                cache_read_tokens=_pick(
                    totals.cache_read_input_tokens, self.usage.cache_read_tokens
                ),
                cache_write_tokens=_pick(
                    totals.cache_creation_input_tokens, self.usage.cache_write_tokens
                ),
            )
        elif event.type == "message_stop":
            self.stop_reason = self.stop_reason or "end_turn"

    def finish(self, provider: str, model: str) -> Iterator[ChatEvent]:
        for index in sorted(self.tools):
            tool = self.tools[index]
            if not tool.complete:
                log.warning("dropping tool call %r whose input never completed", tool.name)
                continue
            yield ToolCallEvent(ToolCall(id=tool.id, name=tool.name, arguments="".join(tool.parts)))
        yield UsageEvent(self.usage)
        raw = self.stop_reason or "end_turn"
        reason = "tool_calls" if self.tools else _FINISH_REASONS.get(raw, "stop")
        yield Finish(reason=reason, provider=provider, model=model, meta={"finish_reason": raw})


def _pick(value: int | None, fallback: int) -> int:
    return fallback if value is None else value


def to_anthropic_messages(request: ChatRequest) -> tuple[list[TextBlockParam], list[MessageParam]]:
    """Our request as (system blocks, messages) in Anthropic's shape."""
    system_texts = [request.system] if request.system else []
    turns: list[tuple[Literal["user", "assistant"], list[ContentBlockParam]]] = []

    def add(role: Literal["user", "assistant"], blocks: list[ContentBlockParam]) -> None:
        if not blocks:
            return
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))

    for message in request.messages:
        if message.role == "system":
            system_texts.append(message.content)
        elif message.role == "tool":
            add(
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": message.tool_call_id or "",
                        "content": message.content,
                    }
                ],
            )
        elif message.role == "user":
            add("user", [*_image_blocks(message), *_text_blocks(message.content)])
        else:
            blocks = _text_blocks(message.content)
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": _tool_input(c)}
                for c in message.tool_calls
            ]
            add("assistant", blocks)

    messages: list[MessageParam] = []
    for role, blocks in turns:
        if role == "user":
            # The API wants tool results ahead of any text in a user message.
            blocks.sort(key=lambda block: block.get("type") != "tool_result")
            messages.append({"role": "user", "content": blocks})
        else:
            messages.append({"role": "assistant", "content": blocks})
    system: list[TextBlockParam] = []
    if system_texts:
        # Marked for prompt caching: the system prompt repeats on every turn.
        text = "\n\n".join(t for t in system_texts if t)
        system.append({"type": "text", "text": text, "cache_control": {"type": "ephemeral"}})
    return system, messages


def _text_blocks(text: str) -> list[ContentBlockParam]:
    # The API refuses empty text blocks.
    return [{"type": "text", "text": text}] if text else []


def _image_blocks(message: ChatMessage) -> list[ContentBlockParam]:
    # Images ahead of the text that asks about them, as Anthropic's guide recommends.
    return [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": _media_type(i.mime), "data": i.base64()},
        }
        for i in message.images
    ]


def _media_type(mime: str) -> Literal["image/jpeg", "image/png", "image/gif", "image/webp"]:
    if mime == "image/png":
        return "image/png"
    if mime == "image/gif":
        return "image/gif"
    if mime == "image/webp":
        return "image/webp"
    return "image/jpeg"


def _tool_input(call: ToolCall) -> dict[str, Any]:
    try:
        return call.parsed_arguments()
    except ValueError:
        # Keep a model's malformed arguments visible to it rather than failing the request.
        return {"_raw_arguments": call.arguments}


def to_anthropic_tools(request: ChatRequest) -> list[ToolParam]:
    return [
        {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}
        for tool in request.tools
    ]


def _status_error(exc: Any) -> ProviderHTTPError:
    body = exc.body
    error = body.get("error") if isinstance(body, dict) else None
    error_type = error.get("type") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    status = exc.status_code
    if status == 200:  # an error event inside the stream
        status = _STATUS_BY_ERROR_TYPE.get(str(error_type), 500)
    return status_error(
        status,
        str(message or exc.message),
        code=str(error_type) if error_type else None,
        headers=dict(exc.response.headers) if exc.status_code != 200 else None,
    )
