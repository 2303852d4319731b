"""The streaming transport of both providers: aiohttp, and server-sent events read off the socket.

A streamed turn through the openai SDK cost ~3 ms of CPU in the SDK alone (request options,
headers, the params transform, a typed model per chunk, its httpx adapter over aiohttp); the
same request and the same events through aiohttp directly cost ~0.8 ms. The SDKs stay for
what is not per message (listing models for the health probe).

One session per provider (every key shares its pool; the key travels in the headers), made on
first use inside the running loop. Deadlines are the caller's (`ChunkTimer`); the session bounds
only the TCP connect.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.errors import ProviderError, ProviderHTTPError, ProviderTimeout
from bot.proxy_env import ProxyLookup

if TYPE_CHECKING:
    import aiohttp

    from bot.providers.base import ToolSpec

#: what a streamed answer may come as; aiohttp says application/octet-stream for none
_STREAM_TYPES = frozenset({"text/event-stream", "application/octet-stream"})
#: request bodies from this size on are sent as a stream (aiohttp's own threshold is 1 MiB)
_STREAMED_BODY = 512 * 1024


@dataclass(frozen=True, slots=True)
class SseEvent:
    #: the `event:` field; None when the server sent only data (OpenAI's chunks)
    event: str | None
    data: str

    def json(self) -> dict[str, Any]:
        """The data as a JSON object; a malformed event is a server fault worth one retry."""
        try:
            value = json.loads(self.data)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise malformed_event(repr(self.data[:80]))
        return value


def malformed_event(detail: str) -> ProviderHTTPError:
    """An event of a shape the API never sends: a server fault worth one retry."""
    return ProviderHTTPError(502, f"malformed stream event: {detail}", retryable=True)


def event_text(value: object) -> str:
    """A text field of an event. Nothing (None, "", an empty list) is no text; anything else
    but a string is malformed here, where it can still be retried or failed over: passed on,
    it broke the turn that joined it."""
    if not value:
        return ""
    if isinstance(value, str):
        return value
    raise malformed_event(f"a text that is a {type(value).__name__}")


#: one encoder for every body: `json.dumps` with options builds a new one per call, which
#: cost more than encoding a turn's payload (~20 of ~30 us)
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: for the rare body with a lone surrogate (a file name with bytes that are not UTF-8 in a
#: call's arguments): it has no UTF-8 form, only its `\udcXX` escape
_dumps_ascii = json.JSONEncoder(separators=(",", ":")).encode


#: how many tool sets a body keeps the JSON of (people of different roles are offered
#: different sets; a set changes when an MCP server comes or goes)
_TOOL_SETS_KEPT = 8


class JsonBody:
    """Encodes request bodies. The tool schemas are most of a body (~7.9 of 8.1 KB for a plain
    turn) and the same on every turn: the JSON of a tool set is made once, when the set is
    first offered, and reused while a turn offers the same specs. A `ToolSpec` is frozen (a
    changed tool is a new spec), so the same specs are the same objects: the key is their
    identities, and the kept specs hold those identities (no id is reused while kept)."""

    def __init__(self, render: Callable[[Sequence[ToolSpec]], list[Any]]) -> None:
        #: the API's form of a tool set (the specs to a list of JSON objects)
        self._render = render
        self._tool_sets: dict[tuple[int, ...], tuple[Sequence[ToolSpec], str]] = {}

    def encode(self, payload: dict[str, Any], specs: Sequence[ToolSpec]) -> bytes:
        try:
            return self._encode(payload, specs)
        except UnicodeEncodeError:
            # raised here, the request would fail as no provider error: the turn would end
            # and its delivery stay pending; the escaped form keeps every character
            tools = {"tools": self._render(specs)} if specs else {}
            return _dumps_ascii({**payload, **tools}).encode()

    def _encode(self, payload: dict[str, Any], specs: Sequence[ToolSpec]) -> bytes:
        head = _dumps(payload)
        if not specs:
            return head.encode()
        key = tuple(map(id, specs))
        kept = self._tool_sets.get(key)
        if kept is None:
            if len(self._tool_sets) >= _TOOL_SETS_KEPT:
                # the first made goes (a dict keeps its order); the others stay reused
                del self._tool_sets[next(iter(self._tool_sets))]
            kept = self._tool_sets[key] = (tuple(specs), _dumps(self._render(specs)))
        return f'{head[:-1]},"tools":{kept[1]}}}'.encode()


class HttpFailure(Exception):
    """A response that was not a 2xx: its status, headers and body (parsed JSON or text)."""

    def __init__(self, status: int, headers: dict[str, str], body: object, text: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = headers
        self.body = body
        self.text = text

    def summary(self) -> str:
        """The status and the body, for an error without a message of its own (cut short by
        `remote.status_error`, as every error message is)."""
        text = self.text.strip()
        return f"Error code: {self.status}" + (f" - {text}" if text else "")


class EventStream:
    """The events of one streamed response, a batch per read."""

    __slots__ = ("_buffer", "_response", "finished")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._buffer = b""
        #: the body was read to its end
        self.finished = False

    async def next_events(self) -> list[SseEvent]:
        """The next complete events (at least one); [] once the body has ended. An event cut
        off by the end of the body is dropped, as the SSE rules say."""
        content = self._response.content
        while not self.finished:
            data = await content.readany()
            if not data:
                self.finished = True
                break
            buffer = self._buffer + data
            if b"\r" in buffer:
                buffer = buffer.replace(b"\r\n", b"\n")
            *blocks, self._buffer = buffer.split(b"\n\n")
            events = [event for block in blocks if (event := _parse(block)) is not None]
            if events:
                return events
        return []

    def close(self) -> None:
        """Give the connection back when the body was read to its end, else drop it (a server
        still sending must not leave its rest on a pooled connection)."""
        if self.finished:
            self._response.release()
        else:
            self._response.close()


def _parse(block: bytes) -> SseEvent | None:
    try:
        text = block.decode()
    except UnicodeDecodeError:
        # a server fault like malformed JSON, not a crash of the reading code
        raise ProviderHTTPError(
            502, f"malformed stream event (not UTF-8): {block[:80]!r}", retryable=True
        ) from None
    if text.startswith("data: ") and "\n" not in text:  # the usual one-line event
        return SseEvent(None, text[6:])
    name: str | None = None
    data: list[str] = []
    for line in text.split("\n"):
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
        # comments (":" first), "id" and "retry" say nothing a model stream needs
    if not data:
        return None
    return SseEvent(name, "\n".join(data))


class SseClient:
    """POSTs a JSON body and returns its event stream; the aiohttp session of one provider."""

    def __init__(self, *, connect_timeout_s: float, pool_size: int) -> None:
        if pool_size < 1:
            # aiohttp reads 0 as "no limit": a pool is sized on purpose, never by accident
            raise ValueError(f"a connection pool needs a size of at least 1, not {pool_size}")
        self._connect_timeout_s = connect_timeout_s
        self.pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: the environment's proxy (and its credentials) for each address
        self._proxies = ProxyLookup()

    def _session_for_loop(self) -> aiohttp.ClientSession:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.pool_size, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                # the connect alone: waiting for the first token and between chunks is the
                # caller's ChunkTimer, a wait for a free pooled connection included
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s),
                skip_auto_headers=("User-Agent",),
                # not trust_env: it looks up the proxy and ~/.netrc in two thread hops per
                # request (a third of a turn's CPU at load); `_proxies` does it once per address
                trust_env=False,
            )
            self._loop = loop
        return self._session

    async def open(self, url: str, headers: dict[str, str], body: bytes) -> EventStream:
        """Send the request; raises HttpFailure for a non-2xx answer, ProviderError for a
        failed connection."""
        session = self._session_for_loop()
        # aiohttp writes a large bytes body in one go and warns that it may hold the loop (a
        # message with photos); as a stream it is written in pieces
        data: bytes | io.BytesIO = body if len(body) < _STREAMED_BODY else io.BytesIO(body)
        # HTTPS_PROXY / HTTP_PROXY / NO_PROXY as the SDK's own client (the probes) takes them:
        # a stream going around the proxy the probes use would fail alone
        proxy = await self._proxies.for_url(url)
        try:
            # no redirect: one would keep the first address's proxy, and a model endpoint
            # that answers 30x is a wrong base_url, shown as its status, not followed
            response = await session.post(
                url, data=data, headers=headers, proxy=proxy, allow_redirects=False
            )
        except Exception as exc:
            error = self.transport_error(exc, phase="first_token", seconds=0.0)
            if error is None:
                raise
            raise error from exc
        if response.status < 300 and response.content_type in _STREAM_TYPES:
            return EventStream(response)
        if response.status < 300:
            # a proxy's sign-in page or a server that ignored "stream": no event would come,
            # and "the stream ended early" would send the operator looking in the wrong place
            response.close()
            raise ProviderHTTPError(
                502,
                f"answered {response.status} with {response.content_type}, not an event stream "
                f"(is base_url the API's address?)",
                retryable=True,
            )
        try:
            raw = await response.read()
        except Exception as exc:
            response.close()
            error = self.transport_error(exc, phase="first_token", seconds=0.0)
            if error is None:
                raise
            raise error from exc
        response.release()
        text = raw.decode(errors="replace")
        try:
            body_json: object = json.loads(text)
        except ValueError:
            body_json = text
        raise HttpFailure(response.status, dict(response.headers), body_json, text)

    def transport_error(
        self, exc: BaseException, *, phase: str, seconds: float
    ) -> ProviderError | None:
        """An aiohttp failure as our error, or None for what is no transport failure: a slow
        connect is a connect timeout, a refused or dropped connection a connection error
        (retried once, then failed over)."""
        import aiohttp

        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return ProviderTimeout("connect", self._connect_timeout_s)
        if isinstance(exc, TimeoutError):
            return ProviderTimeout(phase, seconds)
        if isinstance(exc, aiohttp.ClientError | OSError):
            detail = type(exc).__name__
            return ProviderHTTPError(
                0, f"connection failed ({detail})", retryable=True, code="connection"
            )
        return None

    async def aclose(self) -> None:
        session = self._session
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()
        self._session = None
        self._loop = None
