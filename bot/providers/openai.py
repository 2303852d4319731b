"""OpenAI and every OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio, OpenRouter).

Streaming chat completions over aiohttp with our own SSE reading (`bot.providers.sse`), one
pool per provider and the key in the headers, no retries: retrying and failing over is the
chain's job. The official SDK lists the models for the health probe; it is imported by the
first probe, so a gateway without probes never loads it.
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
    ChatRequest,
    Finish,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    Usage,
    UsageEvent,
)
from bot.providers.chunk_timer import ChunkTimer
from bot.providers.config import ProviderConfig
from bot.providers.openai_messages import call_extra, to_openai_messages, to_openai_tools
from bot.providers.remote import (
    StreamingProvider,
    incomplete_stream,
    status_error,
    transport_error,
)
from bot.providers.sse import EventStream, HttpFailure, JsonBody, event_text

if TYPE_CHECKING:
    from openai import AsyncOpenAI

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


class OpenAIProvider(StreamingProvider["AsyncOpenAI"]):
    """A Provider over one OpenAI-compatible endpoint."""

    sdk_modules = ("openai", "openai._vendor.httpx_aiohttp")

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
        self.base_url = config.resolved_base_url()
        self._url = self.base_url.rstrip("/") + "/chat/completions"
        self._setup(api_keys, clock, pool_size)
        self._body = JsonBody(to_openai_tools)
        # Some compatible servers refuse stream_options; learned on the first refusal.
        self._usage_in_stream = True
        # The official API wants max_completion_tokens; compatible servers know max_tokens.
        self._official = "api.openai.com" in self.base_url

    def _key_headers(self, key: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }

    def _make_sdk_client(self, key: str) -> AsyncOpenAI:
        import openai

        cfg = self.config
        timeout = openai.Timeout(cfg.connect_timeout_s + 5.0, connect=cfg.connect_timeout_s)
        return openai.AsyncOpenAI(
            api_key=key,
            base_url=self.base_url,
            max_retries=0,
            timeout=timeout,
            http_client=openai.DefaultAioHttpClient(timeout=timeout),
        )

    async def _stream_once(
        self, headers: dict[str, str], request: ChatRequest
    ) -> AsyncGenerator[ChatEvent, None]:
        timer = ChunkTimer(self.config.first_token_timeout_s, self.config.idle_timeout_s)
        answer = _Answer(self.name)
        try:
            stream = await timer.request(self._open(headers, request))
            try:
                while events := await timer.chunk(stream.next_events()):
                    for sse in events:
                        if sse.data.startswith("[DONE]"):
                            continue  # read on to the end, so the connection can be reused
                        chunk = sse.json()
                        if chunk.get("error"):
                            raise _stream_error(chunk)
                        for event in answer.feed(chunk):
                            yield event
            finally:
                timer.close()
                stream.close()
        except HttpFailure as exc:
            raise _status_error(exc) from exc
        except ProviderError:
            if answer.finish_reason is None:
                raise
            log.debug("provider %s: stream broke after the finish reason", self.name)
        except Exception as exc:  # aiohttp: the connection broke mid-stream
            error = self._http.transport_error(exc, phase=timer.phase(), seconds=timer.seconds())
            if error is None:
                raise
            if answer.finish_reason is None:
                raise error from exc
            log.debug("provider %s: stream broke after the finish reason: %s", self.name, exc)
        if answer.finish_reason is None:
            raise incomplete_stream()
        for event in answer.finish(self.name, request.model):
            yield event

    async def _open(self, headers: dict[str, str], request: ChatRequest) -> EventStream:
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": to_openai_messages(request, self.name),
            "stream": True,
        }
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if request.max_tokens:
            payload["max_completion_tokens" if self._official else "max_tokens"] = (
                request.max_tokens
            )
        if self._usage_in_stream:
            payload["stream_options"] = {"include_usage": True}
        body = self._body.encode(payload, request.tools)
        try:
            return await self._http.open(self._url, headers, body)
        except HttpFailure as exc:
            if not (self._usage_in_stream and _refuses_stream_options(exc)):
                raise
        log.info("provider %s refuses stream_options; streaming without usage", self.name)
        self._usage_in_stream = False
        return await self._open(headers, request)

    def _probe_error(self, exc: Exception) -> ProviderError | None:
        import openai

        if isinstance(exc, openai.APIStatusError):
            return _sdk_status_error(exc)
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
    #: the call's `extra_content`, as sent (Gemini's thought signature)
    extra: Any = None


@dataclass(slots=True)
class _Answer:
    """One streamed answer as it arrives: text passes through, tool calls are held until done."""

    #: the provider's name, kept with what a call carries for it alone (`call_extra`)
    provider: str
    #: the calls in the order they began
    tool_calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    #: the server's `index` of a call -> its key in `tool_calls`
    slots: dict[int, int] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Usage | None = None
    #: tool calls passed on whole (one cut off by the output limit is not)
    calls_made: int = 0

    def feed(self, chunk: dict[str, Any]) -> Iterator[ChatEvent]:
        """One chunk as the JSON object the server sent (no typed model: ~0.15 ms each)."""
        usage = chunk.get("usage")
        if usage:
            details = usage.get("prompt_tokens_details") or {}
            cached = details.get("cached_tokens") or 0
            # Our input_tokens exclude cache reads, as Anthropic reports them.
            self.usage = Usage(
                input_tokens=max((usage.get("prompt_tokens") or 0) - cached, 0),
                output_tokens=usage.get("completion_tokens") or 0,
                cache_read_tokens=cached,
            )
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content = event_text(delta.get("content"))
            if content:
                yield TextDelta(content)
            for part in delta.get("tool_calls") or ():
                call = self._call_for(part)
                if part.get("id") and not call.id:
                    call.id = part["id"]
                if part.get("extra_content") is not None:
                    call.extra = part["extra_content"]
                function = part.get("function")
                if function:
                    if function.get("name") and not call.name:
                        call.name = function["name"]
                    if function.get("arguments"):
                        call.arguments.append(function["arguments"])
            finish_reason = choice.get("finish_reason")
            if finish_reason is not None and self.finish_reason is None:
                self.finish_reason = finish_reason
                yield from self._complete_tool_calls()

    def _call_for(self, part: dict[str, Any]) -> _ToolCallParts:
        """The call a fragment belongs to. A fragment naming a function starts a new call even
        at an index in use when that call is already named and its arguments are whole JSON:
        Gemini's compatible API sends parallel calls whole, each without an index (or all at
        0), and merged they were one call with both arguments run together. The id alone
        does not tell: some servers (Poolside, older mlx-openai-server) send a new id in
        every fragment of one call. A call with no arguments yet is not whole: a server may
        repeat the name in the fragment that begins them."""
        index = part.get("index", 0)
        key = self.slots.get(index)
        call = None if key is None else self.tool_calls[key]
        named = (part.get("function") or {}).get("name")
        arguments = "" if call is None else "".join(call.arguments)
        if call is None or (named and call.name and arguments and _is_json(arguments)):
            key = self.slots[index] = len(self.tool_calls)
            call = self.tool_calls[key] = _ToolCallParts()
        return call

    def _complete_tool_calls(self) -> Iterator[ToolCallEvent]:
        for index in sorted(self.tool_calls):
            parts = self.tool_calls[index]
            arguments = "".join(parts.arguments)
            if self.finish_reason == "length" and not _is_json(arguments):
                log.warning("dropping tool call %r cut off by the output limit", parts.name)
                continue
            call_id = parts.id or f"call_{uuid.uuid4().hex[:24]}"
            self.calls_made += 1
            extra, extra_from = call_extra(parts.extra, self.provider, parts.name)
            yield ToolCallEvent(ToolCall(call_id, parts.name, arguments, extra, extra_from))

    def finish(self, provider: str, model: str) -> Iterator[ChatEvent]:
        if self.usage is not None:
            yield UsageEvent(self.usage)
        raw = self.finish_reason or "stop"
        reason = "tool_calls" if self.calls_made else _FINISH_REASONS.get(raw, "stop")
        yield Finish(reason=reason, provider=provider, model=model, meta={"finish_reason": raw})


def _is_json(text: str) -> bool:
    try:
        json.loads(text or "{}")
    except ValueError:
        return False
    return True


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
    return None, ""  # not JSON (an error page): the caller says what it has, cut short


def _status_error(failure: HttpFailure) -> ProviderHTTPError:
    code, message = _error_fields(failure.body)
    return status_error(
        failure.status, message or failure.summary(), code=code, headers=failure.headers
    )


def _sdk_status_error(exc: Any) -> ProviderHTTPError:
    code, message = _error_fields(exc.body)
    return status_error(
        exc.status_code, message or exc.message, code=code, headers=dict(exc.response.headers)
    )


def _stream_error(chunk: dict[str, Any]) -> ProviderError:
    """An error event inside a 200 stream (OpenRouter and some servers send these)."""
    code, message = _error_fields(chunk)
    known = _STATUS_BY_STREAM_CODE.get(code or "", 500)
    status = int(code) if code and code.isdigit() else known
    return status_error(status, message or "An error occurred during streaming", code=code)


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


def _refuses_stream_options(failure: HttpFailure) -> bool:
    return failure.status in (400, 422) and "stream_options" in failure.text
