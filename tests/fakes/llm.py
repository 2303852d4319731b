"""A fake LLM server on 127.0.0.1 that speaks OpenAI and Anthropic, for the real SDKs.

    async with FakeLLM() as fake:
        fake.push(Reply(text="hi there"), Reply.error(429, retry_after=2), model="gpt-x")
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=fake.base_url + "/v1")

Routes: POST /v1/chat/completions (OpenAI JSON and SSE, tool-call deltas split across chunks),
POST /v1/messages (Anthropic JSON and SSE, tool_use with input_json_delta), POST /v1/embeddings
(deterministic vectors, OpenAI shape, float or base64), GET /v1/models (health probes),
POST /v1/audio/speech (text to speech: `speech_audio(input, response_format)` bytes, or the
error `speech_status` names).

Each chat request takes the next reply queued for its model, else the next in the shared queue,
else `reply_fn(request)`, else `Reply(text=default_text)`. A reply is text, tool calls, or a
fault: an error status with the API's own error body and headers (`Reply.error(429,
retry_after=2)`, `Reply.context_length()`, `Reply.insufficient_quota()`), a hang before the first
byte (`hang`), a connection reset after N chunks (`reset_after_chunks`, also inside tool-call
JSON), an error event inside the stream (`stream_error`), a fixed delay (`delay_s`,
`chunk_delay_s`). Server-wide: `rejects_stream_options`, `models_status`, `model_ids` (what
GET /v1/models lists), `api_keys` (when set, any other key gets the API's own 401),
`embed_delay_s` (every embeddings answer waits that long). Every
request is recorded in `.requests`; `calls(model=..., path=...)` filters them.

POST /v1/audio/transcriptions (multipart, as the OpenAI SDK sends it) answers
`{"text": transcript_text}`, the stand-in for the words in any audio; `transcript_replies`
queues faults or other texts (a `Reply`'s status and text; `hang`: no answer at all). Its
body is recorded as {"model", "language", "file_name", "file_bytes", "file_type"}; the audio
itself is not kept.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.providers.base import ToolCall

DEFAULT_TEXT = "Hello from the fake model"
#: the most tools a chat completions request may offer
OPENAI_MAX_TOOLS = 128


# What each API sends for a fault kind, worded as the real services word it:
# kind: (OpenAI code, OpenAI type, OpenAI message, Anthropic type, Anthropic message)
# fmt: off
_ERRORS: dict[str, tuple[str, str, str, str, str]] = {
    "rate_limit": ("rate_limit_exceeded", "requests", "Rate limit reached for requests",
                   "rate_limit_error", "Number of request tokens has exceeded your rate limit"),
    "auth": ("invalid_api_key", "invalid_request_error", "Incorrect API key provided",
             "authentication_error", "invalid x-api-key"),
    "forbidden": ("forbidden", "invalid_request_error", "Project has no access to this model",
                  "permission_error", "Your API key has no permission for this resource"),
    "invalid_request": ("invalid_value", "invalid_request_error", "Invalid value for 'temperature'",
                        "invalid_request_error", "temperature: range: 0..1"),
    "context_length": ("context_length_exceeded", "invalid_request_error",
                       "This model's maximum context length is 8192 tokens. However, your "
                       "messages resulted in 9000 tokens.",
                       "invalid_request_error", "prompt is too long: 210000 tokens > 200000"),
    "insufficient_quota": ("insufficient_quota", "insufficient_quota",
                           "You exceeded your current quota, please check your plan and billing "
                           "details.",
                           "billing_error", "Your credit balance is too low to access the API."),
    "server": ("server_error", "server_error", "The server had an error",
               "api_error", "Internal error"),
    "overloaded": ("overloaded", "server_error", "The engine is overloaded",
                   "overloaded_error", "Overloaded"),
}
# fmt: on
_KIND_BY_STATUS = {
    400: "invalid_request",
    401: "auth",
    402: "insufficient_quota",
    403: "forbidden",
    429: "rate_limit",
    529: "overloaded",
}


@dataclass
class Reply:
    """One scripted answer or one injected fault."""

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    status: int = 200
    #: which error body to send with a non-200 status (see _ERRORS); derived from the status
    error_kind: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: accept the request, then send nothing until the client goes away
    hang: bool = False
    #: close the connection after this many streamed chunks (SSE events)
    reset_after_chunks: int | None = None
    #: send an error event of this kind (see _ERRORS) inside the 200 stream, then end it
    stream_error: str | None = None
    stream_error_after_chunks: int = 0
    #: the whole body, with `status` and `content_type`, instead of a stream or an error of
    #: `error_kind` (a proxy's HTML page where the API should be, a server's own error text)
    raw_body: bytes | None = None
    content_type: str = "text/html"
    #: raw bytes written into the stream after this many events (a malformed event)
    garbage: bytes = b""
    garbage_after_chunks: int = 0
    #: the finish reason the stream ends with instead of stop/tool_calls ("length": cut off
    #: by the output limit); OpenAI's API only
    finish_reason: str | None = None
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    input_tokens: int = 12
    output_tokens: int = 7
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @classmethod
    def error(
        cls,
        status: int,
        kind: str | None = None,
        *,
        retry_after: float | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        all_headers = dict(headers or {})
        if retry_after is not None:
            all_headers["Retry-After"] = str(retry_after)
        return cls(status=status, error_kind=kind, headers=all_headers)

    @classmethod
    def context_length(cls) -> Reply:
        return cls.error(400, "context_length")

    @classmethod
    def insufficient_quota(cls, status: int = 402) -> Reply:
        return cls.error(status, "insufficient_quota")


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return model if isinstance(model, str) else None


class FakeLLM:
    def __init__(self, host: str = "127.0.0.1", *, embedding_dim: int = 16) -> None:
        assert host.startswith("127.") or host == "localhost", "the fake binds to loopback only"
        self.host = host
        self.embedding_dim = embedding_dim
        self.default_text = DEFAULT_TEXT
        self.reply_fn: Callable[[RecordedRequest], Reply] | None = None
        #: answer 400 to any request with stream_options, like some compatible servers
        self.rejects_stream_options = False
        #: status for GET /v1/models (health probes), and the model ids it lists
        self.models_status = 200
        self.model_ids: list[str] = ["fake-model"]
        #: set: GET /v1/models without `?here` is redirected (307) to this URL
        self.models_moved_to: str | None = None
        #: None: any key is accepted; else a request with another key (or none) gets a 401
        self.api_keys: set[str] | None = None
        #: seconds each /v1/embeddings request waits before it answers (slow embedders)
        self.embed_delay_s = 0.0
        #: cleared: chat answers wait until it is set again (a model that stalls), all of
        #: them or, with `hold_only`, those it picks
        self.hold = asyncio.Event()
        self.hold.set()
        self.hold_only: Callable[[RecordedRequest], bool] | None = None
        #: status of every /v1/audio/speech answer (503: the speech server is down)
        self.speech_status = 200
        #: a 200 answer (body, content type) to every /v1/audio/speech request instead of
        #: audio: a proxy's error page, or a server's JSON error sent with 200
        self.speech_body: tuple[str, str] | None = None
        self.requests: list[RecordedRequest] = []
        #: what POST /v1/audio/transcriptions hears in any audio, unless a queued reply says
        self.transcript_text = "what is on my shopping list"
        self.transcript_replies: deque[Reply] = deque()
        #: raw 200 answers (body, content type) to transcriptions, before any queued reply:
        #: what a proxy's error page or a server with another JSON shape sends
        self.transcript_bodies: deque[tuple[str, str]] = deque()
        #: requests being answered right now (a hung one counts until the client goes away)
        self.open_requests = 0
        self.disconnects = 0
        self._queue: deque[Reply] = deque()
        self._by_model: dict[str, deque[Reply]] = {}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = 0

    # lifecycle

    async def start(self, port: int = 0) -> FakeLLM:
        """Listen on `port` (0: any free one); a stopped fake can come back on its old port."""
        app = web.Application(middlewares=[self._check_key], client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._openai_chat)
        app.router.add_post("/v1/messages", self._anthropic_messages)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/audio/transcriptions", self._transcriptions)
        app.router.add_post("/v1/audio/speech", self._speech)
        # handler_cancellation: a hung handler learns at once that its client went away.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port, reuse_address=True)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeLLM:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    def provider(self, **settings: Any) -> dict[str, Any]:
        """A `[providers.<name>]` table for this fake, its key in $FAKE_LLM_KEY."""
        return {"base_url": self.base_url + "/v1", "api_key_env": "FAKE_LLM_KEY", **settings}

    # scripting

    def push(self, *replies: Reply | str, model: str | None = None) -> None:
        """Queue replies (a str is a text reply), for one model or for any request."""
        queue = self._queue if model is None else self._by_model.setdefault(model, deque())
        queue.extend(Reply(text=r) if isinstance(r, str) else r for r in replies)

    def calls(self, model: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if (model is None or r.model == model) and (path is None or r.path == path)
        ]

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Until no request is being answered (a hung one ends when its client disconnects)."""
        async with asyncio.timeout(timeout):
            while self.open_requests:
                await asyncio.sleep(0.01)

    def _next_reply(self, recorded: RecordedRequest) -> Reply:
        queue = self._by_model.get(recorded.model or "")
        if queue:
            return queue.popleft()
        if self._queue:
            return self._queue.popleft()
        if self.reply_fn is not None:
            return self.reply_fn(recorded)
        return Reply(text=self.default_text)

    async def _record(self, request: web.Request) -> RecordedRequest:
        body = await request.json() if request.can_read_body else {}
        recorded = RecordedRequest(request.method, request.path, dict(request.headers), body)
        self.requests.append(recorded)
        return recorded

    # handlers

    @web.middleware
    async def _check_key(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.api_keys is None:
            return await handler(request)
        anthropic = "x-api-key" in request.headers
        given = request.headers.get("x-api-key") or request.headers.get("Authorization", "")
        if given.removeprefix("Bearer ") in self.api_keys:
            return await handler(request)
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.headers), {})
        )
        render = _AnthropicRender({}) if anthropic else _OpenAIRender({})
        return web.json_response(render.error("auth"), status=401)

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        if self.rejects_stream_options and "stream_options" in recorded.body:
            message = "Unrecognized request argument supplied: stream_options"
            return web.json_response(
                {"error": {"message": message, "type": "invalid_request_error"}}, status=400
            )
        tools = recorded.body.get("tools") or []
        if len(tools) > OPENAI_MAX_TOOLS:  # as OpenAI refuses it: the whole request fails
            message = (
                "Invalid 'tools': array too long. Expected an array with maximum length "
                f"{OPENAI_MAX_TOOLS}, but got an array with length {len(tools)} instead."
            )
            error = {
                "message": message,
                "type": "invalid_request_error",
                "param": "tools",
                "code": "array_above_max_length",
            }
            return web.json_response({"error": error}, status=400)
        if _unparsed_arguments(recorded.body):
            # as Ollama, vLLM and llama.cpp refuse it: they parse a past call's arguments
            error = {"message": "invalid tool call arguments", "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=400)
        reply = self._next_reply(recorded)
        return await self._answer(request, recorded, reply, _OpenAIRender(recorded.body))

    async def _anthropic_messages(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        reply = self._next_reply(recorded)
        return await self._answer(request, recorded, reply, _AnthropicRender(recorded.body))

    async def _transcriptions(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        audio = b""
        if isinstance(upload, web.FileField):
            with upload.file:  # not left to the request's end, which a hang puts off
                audio = upload.file.read()
        body = {
            "model": str(form.get("model", "")),
            "language": str(form.get("language", "")),
            "file_name": upload.filename if isinstance(upload, web.FileField) else "",
            "file_type": upload.content_type if isinstance(upload, web.FileField) else "",
            "file_bytes": len(audio),
        }
        self.requests.append(
            RecordedRequest(request.method, request.path, dict(request.headers), body)
        )
        if self.transcript_bodies:
            raw, content_type = self.transcript_bodies.popleft()
            return web.Response(text=raw, content_type=content_type)
        reply = self.transcript_replies.popleft() if self.transcript_replies else None
        if reply is not None and reply.hang:  # a server that takes the audio and never answers
            await self._closing.wait()
            return web.Response(status=503)
        if reply is not None and reply.status != 200:
            kind = reply.error_kind or _KIND_BY_STATUS.get(reply.status, "server")
            return web.json_response(_OpenAIRender({}).error(kind), status=reply.status)
        if not audio:  # as OpenAI answers an empty upload
            error = {"message": "Audio file is empty", "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=400)
        return web.json_response({"text": reply.text if reply else self.transcript_text})

    async def _answer(
        self,
        request: web.Request,
        recorded: RecordedRequest,
        reply: Reply,
        render: _OpenAIRender | _AnthropicRender,
    ) -> web.StreamResponse:
        self.open_requests += 1
        try:
            if not self.hold.is_set() and (self.hold_only is None or self.hold_only(recorded)):
                await self.hold.wait()
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if reply.hang:
                await self._closing.wait()
                return web.Response(status=503)
            if reply.raw_body is not None:
                return web.Response(
                    body=reply.raw_body, status=reply.status, content_type=reply.content_type
                )
            if reply.status != 200:
                kind = reply.error_kind or _KIND_BY_STATUS.get(reply.status, "server")
                return web.json_response(
                    render.error(kind), status=reply.status, headers=reply.headers
                )
            if not recorded.body.get("stream"):
                return web.json_response(render.message(reply), headers=reply.headers)
            return await self._stream(request, reply, render)
        except asyncio.CancelledError:
            self.disconnects += 1
            raise
        finally:
            self.open_requests -= 1

    async def _stream(
        self, request: web.Request, reply: Reply, render: _OpenAIRender | _AnthropicRender
    ) -> web.StreamResponse:
        events = render.events(reply)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", **reply.headers}
        )
        await response.prepare(request)
        for sent, event in enumerate(events):
            if reply.reset_after_chunks is not None and sent >= reply.reset_after_chunks:
                assert request.transport is not None
                request.transport.close()
                return response
            if reply.stream_error is not None and sent >= reply.stream_error_after_chunks:
                await response.write(render.error_event(reply.stream_error))
                break
            if reply.garbage and sent == reply.garbage_after_chunks:
                await response.write(reply.garbage)
            await response.write(event)
            if reply.chunk_delay_s:
                await asyncio.sleep(reply.chunk_delay_s)
        await response.write_eof()
        return response

    async def _embeddings(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        if self.embed_delay_s:
            await asyncio.sleep(self.embed_delay_s)
        raw = recorded.body.get("input", "")
        texts = [raw] if isinstance(raw, str) else list(raw)
        data = []
        for index, text in enumerate(texts):
            vector = fake_embedding(str(text), self.embedding_dim)
            if recorded.body.get("encoding_format") == "base64":
                packed = struct.pack(f"<{len(vector)}f", *vector)
                embedding: Any = base64.b64encode(packed).decode()
            else:
                embedding = vector
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(str(t).split()) for t in texts)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": recorded.model or "fake-embed",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _speech(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        if self.speech_status != 200:
            body = _OpenAIRender(recorded.body).error("server")
            return web.json_response(body, status=self.speech_status)
        if self.speech_body is not None:
            return web.Response(text=self.speech_body[0], content_type=self.speech_body[1])
        audio_format = str(recorded.body.get("response_format") or "mp3")
        audio = speech_audio(str(recorded.body.get("input", "")), audio_format)
        kind = "audio/ogg" if audio_format == "opus" else f"audio/{audio_format}"
        return web.Response(body=audio, content_type=kind)

    async def _models(self, request: web.Request) -> web.Response:
        self.requests.append(RecordedRequest("GET", request.path, dict(request.headers), {}))
        if self.models_status != 200:
            return web.json_response({"error": {"message": "down"}}, status=self.models_status)
        if self.models_moved_to is not None and "here" not in request.query:
            raise web.HTTPTemporaryRedirect(self.models_moved_to)
        # Entries that satisfy both SDKs' model-list types.
        # fmt: off
        models = [{"id": i, "object": "model", "type": "model", "created": 0,
                   "created_at": "2025-01-01T00:00:00Z", "owned_by": "fake", "display_name": i}
                  for i in self.model_ids]
        # fmt: on
        first = self.model_ids[0] if self.model_ids else None
        page = {"object": "list", "data": models, "has_more": False, "first_id": first}
        return web.json_response(page)


def _unparsed_arguments(body: dict[str, Any]) -> bool:
    """Whether a past tool call in the history has arguments that are no JSON object."""
    for message in body.get("messages") or []:
        for call in message.get("tool_calls") or []:
            try:
                arguments = json.loads(call["function"]["arguments"])
            except ValueError:
                return True
            if not isinstance(arguments, dict):
                return True
    return False


def speech_audio(text: str, audio_format: str) -> bytes:
    """What the fake speaks: the format's magic bytes, then a digest of the text."""
    magic = {"opus": b"OggS\x00\x02", "mp3": b"ID3\x04\x00\x00"}.get(audio_format, b"")
    return magic + audio_format.encode() + b":" + hashlib.sha256(text.encode()).digest()


def fake_embedding(text: str, dim: int) -> list[float]:
    """A deterministic unit vector per text."""
    digest = hashlib.sha256(text.encode()).digest()
    while len(digest) < dim:
        digest += hashlib.sha256(digest).digest()
    values = [(byte - 127.5) / 127.5 for byte in digest[:dim]]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]


def _words(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text) or ([text] if text else [])


def _pieces(text: str, size: int = 7) -> list[str]:
    """Tool arguments cut into small pieces, so one JSON value spans several chunks."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class _Render:
    """One API's wire shapes for a reply: error body, whole message, streamed events."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.model = str(body.get("model", "fake-model"))


class _OpenAIRender(_Render):
    def error(self, kind: str) -> dict[str, Any]:
        code, type_, message, _, _ = _ERRORS[kind]
        return {"error": {"message": message, "type": type_, "code": code, "param": None}}

    def error_event(self, kind: str) -> bytes:
        return f"data: {json.dumps(self.error(kind))}\n\n".encode()

    def _usage(self, reply: Reply) -> dict[str, Any]:
        prompt = reply.input_tokens + reply.cache_read_tokens
        return {
            "prompt_tokens": prompt,
            "completion_tokens": reply.output_tokens,
            "total_tokens": prompt + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cache_read_tokens},
        }

    def message(self, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in reply.tool_calls
            ]
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                }
            ],
            "usage": self._usage(reply),
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choices = [] if extra else [{"index": 0, "delta": delta, "finish_reason": finish}]
        chunk = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    def events(self, reply: Reply) -> list[bytes]:
        out = [self._chunk({"role": "assistant", "content": ""})]
        out += [self._chunk({"content": word}) for word in _words(reply.text)]
        for index, call in enumerate(reply.tool_calls):
            head = {"index": index, "id": call.id, "type": "function"}
            if call.extra:  # as Gemini's compatible API sends a call's thought signature
                head["extra_content"] = json.loads(call.extra)
            function = {"name": call.name, "arguments": ""}
            out.append(self._chunk({"tool_calls": [{**head, "function": function}]}))
            out += [
                self._chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                for piece in _pieces(call.arguments)
            ]
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        out.append(self._chunk({}, finish))
        if (self.body.get("stream_options") or {}).get("include_usage"):
            out.append(self._chunk({}, usage=self._usage(reply)))  # a last chunk, no choices
        out.append(b"data: [DONE]\n\n")
        return out


class _AnthropicRender(_Render):
    def error(self, kind: str) -> dict[str, Any]:
        _, _, _, type_, message = _ERRORS[kind]
        return {"type": "error", "error": {"type": type_, "message": message}}

    def error_event(self, kind: str) -> bytes:
        return f"event: error\ndata: {json.dumps(self.error(kind))}\n\n".encode()

    def _usage(self, reply: Reply, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": reply.input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": reply.cache_read_tokens,
            "cache_creation_input_tokens": reply.cache_write_tokens,
        }

    def _content(self, reply: Reply) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        blocks += [
            {"type": "tool_use", "id": c.id, "name": c.name, "input": c.parsed_arguments()}
            for c in reply.tool_calls
        ]
        return blocks

    def message(self, reply: Reply) -> dict[str, Any]:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self._content(reply),
            "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
            "stop_sequence": None,
            "usage": self._usage(reply, reply.output_tokens),
        }

    @staticmethod
    def _event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()

    def events(self, reply: Reply) -> list[bytes]:
        start = {**self.message(reply), "content": [], "stop_reason": None}
        start["usage"] = self._usage(reply, 1)
        out = [self._event("message_start", {"message": start}), self._event("ping", {})]
        blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        if reply.text:
            deltas = [{"type": "text_delta", "text": word} for word in _words(reply.text)]
            blocks.append(({"type": "text", "text": ""}, deltas))
        for call in reply.tool_calls:
            block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
            pieces = _pieces(call.arguments)
            blocks.append(
                (block, [{"type": "input_json_delta", "partial_json": p} for p in pieces])
            )
        for index, (block, deltas) in enumerate(blocks):
            out.append(self._event("content_block_start", {"index": index, "content_block": block}))
            out += [
                self._event("content_block_delta", {"index": index, "delta": d}) for d in deltas
            ]
            out.append(self._event("content_block_stop", {"index": index}))
        stop = {
            "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
            "stop_sequence": None,
        }
        usage = {"output_tokens": reply.output_tokens}
        out.append(self._event("message_delta", {"delta": stop, "usage": usage}))
        out.append(self._event("message_stop", {}))
        return out
