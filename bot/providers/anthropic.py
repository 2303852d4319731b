"""Anthropic's Messages API, streamed over aiohttp with our own SSE reading (the official
SDK's AsyncAnthropic lists the models for the health probe).

Streaming with tool use: a tool_use block's input arrives as input_json_delta fragments and
becomes a ToolCallEvent only once the message has finished. Our history is mapped to Anthropic's
shape: the system prompt apart, tool results as user messages of tool_result blocks, and
consecutive messages of one role merged.
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
    ToolSpec,
    Usage,
    UsageEvent,
)
from bot.providers.chunk_timer import ChunkTimer
from bot.providers.config import ProviderConfig
from bot.providers.remote import (
    StreamingProvider,
    incomplete_stream,
    status_error,
    transport_error,
)
from bot.providers.sse import HttpFailure, JsonBody, event_text, malformed_event

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from anthropic.types import ContentBlockParam, MessageParam, TextBlockParam, ToolParam

log = logging.getLogger(__name__)

#: the Messages API version this client speaks (the installed SDK's pin, which the probe sends)
ANTHROPIC_VERSION = "2026-10-21"
#: the stream's events this client reads; others (newer kinds) are skipped
_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "error",
    }
)

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


class AnthropicProvider(StreamingProvider["AsyncAnthropic"]):
    """A Provider over the Anthropic Messages API (or a server that speaks it)."""

    sdk_modules = ("anthropic",)

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        api_keys: Sequence[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        pool_size: int | None = None,
    ) -> None:
        self.name = name
        self.config = config
        # The SDK appends /v1 itself; so do we.
        base_url = config.resolved_base_url()
        self.base_url = base_url.rstrip("/").removesuffix("/v1")
        self._url = self.base_url + "/v1/messages"
        self._setup(api_keys, clock, pool_size)
        self._json = JsonBody(to_anthropic_tools)

    def _key_headers(self, key: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {key}",
            "anthropic-version": ANTHROPIC_VERSION,
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }

    def _make_sdk_client(self, key: str) -> AsyncAnthropic:
        import anthropic

        cfg = self.config
        timeout = anthropic.Timeout(cfg.connect_timeout_s + 5.0, connect=cfg.connect_timeout_s)
        return anthropic.AsyncAnthropic(
            api_key=key, base_url=self.base_url, max_retries=0, timeout=timeout
        )

    async def _stream_once(
        self, headers: dict[str, str], request: ChatRequest
    ) -> AsyncGenerator[ChatEvent, None]:
        cfg = self.config
        timer = ChunkTimer(cfg.first_token_timeout_s, cfg.idle_timeout_s)
        answer = _Answer()
        try:
            stream = await timer.request(self._http.open(self._url, headers, self._body(request)))
            try:
                # Read to the end, past message_stop, so the connection can be reused.
                while events := await timer.chunk(stream.next_events()):
                    for sse in events:
                        if sse.event not in _EVENTS:
                            continue  # newer event kinds this client does not know
                        data = sse.json()
                        if sse.event == "error":
                            raise _stream_error(data)
                        for out in answer.feed(sse.event, data):
                            yield out
            finally:
                timer.close()
                stream.close()
        except HttpFailure as exc:
            raise _status_error(exc) from exc
        except ProviderError:
            if answer.stop_reason is None:
                raise
            log.debug("provider %s: stream broke after the stop reason", self.name)
        except Exception as exc:  # aiohttp: the connection broke mid-stream
            error = self._http.transport_error(exc, phase=timer.phase(), seconds=timer.seconds())
            if error is None:
                raise
            if answer.stop_reason is None:
                raise error from exc
            log.debug("provider %s: stream broke after the stop reason: %s", self.name, exc)
        if answer.stop_reason is None:
            raise incomplete_stream()
        for out in answer.finish(self.name, request.model):
            yield out

    def _body(self, request: ChatRequest) -> bytes:
        # No temperature: the Messages API's sampling is fixed per model here.
        system, messages = to_anthropic_messages(request)
        payload: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens or self.config.max_output_tokens,
            "messages": messages,
            "stream": True,
        }
        if system:
            payload["system"] = system
        return self._json.encode(payload, request.tools)

    def _probe_error(self, exc: Exception) -> ProviderError | None:
        import anthropic

        if isinstance(exc, anthropic.APIStatusError):
            return _sdk_status_error(exc)
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

    def feed(self, kind: str, event: dict[str, Any]) -> Iterator[ChatEvent]:
        """One event as the JSON object the server sent (no typed model per event)."""
        if kind == "message_start":
            usage = (event.get("message") or {}).get("usage") or {}
            self.usage = Usage(
                input_tokens=usage.get("input_tokens") or 0,
                output_tokens=usage.get("output_tokens") or 0,
                cache_read_tokens=usage.get("cache_read_input_tokens") or 0,
                cache_write_tokens=usage.get("cache_creation_input_tokens") or 0,
            )
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                if not (block.get("id") and block.get("name")):
                    raise malformed_event("a tool_use block without its id or name")
                self.tools[event.get("index", 0)] = _ToolUse(block["id"], block["name"])
            elif block.get("type") == "text" and (text := event_text(block.get("text"))):
                yield TextDelta(text)
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            index = event.get("index", 0)
            if delta.get("type") == "text_delta" and (text := event_text(delta.get("text"))):
                yield TextDelta(text)
            elif delta.get("type") == "input_json_delta" and index in self.tools:
                self.tools[index].parts.append(delta.get("partial_json") or "")
        elif kind == "content_block_stop":
            if event.get("index", 0) in self.tools:
                self.tools[event.get("index", 0)].complete = True
        elif kind == "message_delta":
            self.stop_reason = (event.get("delta") or {}).get("stop_reason") or "end_turn"
            # message_delta carries cumulative counts; a field it leaves out keeps its value.
            totals = event.get("usage") or {}
            self.usage = Usage(
                input_tokens=_pick(totals.get("input_tokens"), self.usage.input_tokens),
                output_tokens=_pick(totals.get("output_tokens"), self.usage.output_tokens),
                cache_read_tokens=_pick(
                    totals.get("cache_read_input_tokens"), self.usage.cache_read_tokens
                ),
                cache_write_tokens=_pick(
                    totals.get("cache_creation_input_tokens"), self.usage.cache_write_tokens
                ),
            )
        elif kind == "message_stop":
            self.stop_reason = self.stop_reason or "end_turn"

    def finish(self, provider: str, model: str) -> Iterator[ChatEvent]:
        made = 0
        for index in sorted(self.tools):
            tool = self.tools[index]
            if not tool.complete:
                log.warning("dropping tool call %r whose input never completed", tool.name)
                continue
            made += 1
            yield ToolCallEvent(ToolCall(id=tool.id, name=tool.name, arguments="".join(tool.parts)))
        yield UsageEvent(self.usage)
        raw = self.stop_reason or "end_turn"
        # a tool call cut off by the output limit was dropped: the answer is "length"
        reason = "tool_calls" if made else _FINISH_REASONS.get(raw, "stop")
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
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments_object()}
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


def to_anthropic_tools(tools: Sequence[ToolSpec]) -> list[ToolParam]:
    return [
        {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}
        for tool in tools
    ]


def _error_fields(body: object) -> tuple[str | None, str | None]:
    """(type, message) from an Anthropic error body: {"type": "error", "error": {...}}."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None
    error_type, message = error.get("type"), error.get("message")
    return (str(error_type) if error_type else None, str(message) if message else None)


def _status_error(failure: HttpFailure) -> ProviderHTTPError:
    error_type, message = _error_fields(failure.body)
    return status_error(
        failure.status, message or failure.summary(), code=error_type, headers=failure.headers
    )


def _stream_error(data: dict[str, Any]) -> ProviderHTTPError:
    """An error event inside a 200 stream: its status from the error type."""
    error_type, message = _error_fields(data)
    status = _STATUS_BY_ERROR_TYPE.get(str(error_type), 500)
    return status_error(status, message or "An error occurred during streaming", code=error_type)


def _sdk_status_error(exc: Any) -> ProviderHTTPError:
    error_type, message = _error_fields(exc.body)
    return status_error(
        exc.status_code,
        message or exc.message,
        code=error_type,
        headers=dict(exc.response.headers),
    )
