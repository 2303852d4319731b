"""The wire to one server: a stdio process, streamable HTTP, or SSE, as the SDK's transports.

`open_transport` is entered once per connection attempt. Its read stream reports its end (the
process exited, the stream closed), so a crash is noticed at once rather than at the next
ping, and the tools go away before the model is offered them again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import anyio
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage

from bot.mcp.config import HttpServerConfig
from bot.mcp.launch import StderrPump, StdioLaunch, new_tail

#: read timeout of the HTTP transports: a server may hold a stream open that long
_HTTP_READ_TIMEOUT_S = 300.0
#: the bound of the request that ends the session at close: a server that hangs must not
#: hold a stop (or a restart) for the read timeout above
_HTTP_CLOSE_TIMEOUT_S = 5.0

#: (read stream, write stream), as the SDK's transports yield them
TransportStreams = tuple[Any, Any]


class _Receiving(Protocol):
    async def receive(self) -> SessionMessage | Exception: ...

    async def aclose(self) -> None: ...


class TransportOpener(Protocol):
    def open(self, on_end: Callable[[], None]) -> Any:
        """An async context manager giving (read stream, write stream)."""

    def describe(self) -> str: ...

    def last_words(self) -> str:
        """What the server said last (its stderr), to explain a failure; "" if nothing."""


@dataclass
class StdioOpener:
    name: str
    launch: StdioLaunch
    redact: Callable[[str], str]
    sandboxed: bool
    tail: deque[str] = field(default_factory=new_tail)

    @asynccontextmanager
    async def open(self, on_end: Callable[[], None]) -> AsyncIterator[TransportStreams]:
        params = StdioServerParameters(
            command=self.launch.command,
            args=self.launch.args,
            env=self.launch.env,
            cwd=Path(self.launch.cwd),
        )
        pump = StderrPump(self.name, self.redact, self.tail)
        try:
            async with stdio_client(params, errlog=pump.writer) as (read, write):
                yield _WatchedReadStream(read, on_end), write
        finally:
            await pump.aclose()

    def describe(self) -> str:
        return "stdio, sandboxed (bwrap)" if self.sandboxed else "stdio, host process"

    def last_words(self) -> str:
        return self.tail[-1] if self.tail else ""


@dataclass
class HttpOpener:
    entry: HttpServerConfig
    headers: dict[str, str]
    connect_timeout_s: float

    @asynccontextmanager
    async def open(self, on_end: Callable[[], None]) -> AsyncIterator[TransportStreams]:
        if self.entry.transport == "sse":
            transport = sse_client(
                self.entry.url,
                headers=self.headers,
                timeout=self.connect_timeout_s,
                sse_read_timeout=_HTTP_READ_TIMEOUT_S,
            )
            async with transport as (read, write):
                yield _WatchedReadStream(read, on_end), write
            return
        import httpx2

        timeout = httpx2.Timeout(self.connect_timeout_s, read=_HTTP_READ_TIMEOUT_S)
        hooks = {"request": [_bound_session_end]}
        async with (
            httpx2.AsyncClient(headers=self.headers, timeout=timeout, event_hooks=hooks) as http,
            streamable_http_client(self.entry.url, http_client=http) as (read, write),
        ):
            yield _WatchedReadStream(read, on_end), write

    def describe(self) -> str:
        kind = "SSE" if self.entry.transport == "sse" else "streamable HTTP"
        return f"{kind} {self.entry.url}"

    def last_words(self) -> str:
        return ""


async def _bound_session_end(request: Any) -> None:
    """The SDK ends a streamable HTTP session with a DELETE when its transport closes."""
    if request.method == "DELETE":
        import httpx2

        request.extensions["timeout"] = httpx2.Timeout(_HTTP_CLOSE_TIMEOUT_S).as_dict()


class _WatchedReadStream:
    """The transport's read stream, calling `on_end` once when it ends or is closed."""

    def __init__(self, inner: _Receiving, on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    @property
    def last_context(self) -> Any:
        # the dispatcher reads the sender's context from streams that carry one
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _WatchedReadStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> bool | None:
        await self._inner.aclose()
        return None
