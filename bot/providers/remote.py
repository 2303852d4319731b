"""What the OpenAI and Anthropic providers share: key rotation, error mapping, the stream pool.

Nothing here imports an SDK at module level; `httpx2` (the transport both SDKs use for the
health probe) is imported only inside the functions that inspect its exceptions.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import importlib.util
import logging
import math
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bot.errors import ContextTooLong, ProviderError, ProviderHTTPError, ProviderTimeout
from bot.providers.base import ChatEvent, ChatRequest
from bot.providers.config import ProviderConfig
from bot.providers.sse import SseClient

log = logging.getLogger("bot.providers")

ClientT = TypeVar("ClientT")
SdkT = TypeVar("SdkT")

#: the stream pool of a provider built without a say (a CLI command, a test); the gateway
#: sizes it to its `max_concurrent_turns`
DEFAULT_POOL_SIZE = 100

#: how long a key that was refused (401/403) sits out before it is tried again
KEY_AUTH_COOLDOWN_S = 600.0
#: the shortest pause for a key that got a 429
KEY_RATE_LIMIT_COOLDOWN_S = 5.0
#: the longest pause a server's Retry-After can ask for (an hour, the billing cooldown)
RETRY_AFTER_MAX_S = 3600.0
#: statuses worth another try: the same list the SDKs retry on
TRANSIENT_STATUSES = frozenset({408, 409, 429})

_CONTEXT_MARKERS = (
    "context_length",
    "context length",
    "context window",
    "context size",
    "context limit",
    "maximum context",
    "prompt is too long",
)
_BILLING_MARKERS = ("insufficient_quota", "billing", "credit balance", "payment required")


@dataclass(slots=True)
class _Key:
    value: str
    ready_at: float = 0.0


class KeyPool(Generic[ClientT]):
    """A provider's API keys, each with its own client made on first use, rotated on refusal.

    The key in use stays in use until it is refused or rate-limited; then the next ready one
    takes over. When none is ready, the one that recovers soonest is used.
    """

    def __init__(
        self,
        keys: Sequence[str],
        make_client: Callable[[str], ClientT],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not keys:
            raise ValueError("a provider needs at least one key (a dummy one for local servers)")
        self._keys = [_Key(value) for value in keys]
        self._make_client = make_client
        self._clients: dict[int, ClientT] = {}
        self._clock = clock
        self._current = 0

    def pick(self) -> tuple[int, ClientT]:
        now = self._clock()
        count = len(self._keys)
        order = [(self._current + step) % count for step in range(count)]
        ready = [i for i in order if self._keys[i].ready_at <= now]
        index = ready[0] if ready else min(order, key=lambda i: self._keys[i].ready_at)
        self._current = index
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._make_client(self._keys[index].value)
        return index, client

    def penalize(self, index: int, error: ProviderHTTPError) -> bool:
        """Sit a key out after a refusal or a 429. True if the caller may retry with another key.

        Only a refusal is retried at once: a 429 moves on to the next key for the next request,
        while this one fails over.
        """
        if error.status in (401, 403):
            cooldown = KEY_AUTH_COOLDOWN_S
        elif error.status == 429:
            cooldown = max(error.retry_after or 0.0, KEY_RATE_LIMIT_COOLDOWN_S)
        else:
            return False
        now = self._clock()
        self._keys[index].ready_at = now + cooldown
        if index == self._current:
            self._current = (index + 1) % len(self._keys)
        if error.status == 429:
            return False
        return any(key.ready_at <= now for key in self._keys)

    def key(self, index: int) -> str:
        return self._keys[index].value

    def clients(self) -> Iterator[ClientT]:
        return iter(list(self._clients.values()))

    def forget_clients(self) -> None:
        self._clients.clear()


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds: `retry-after-ms`, or `retry-after` as seconds or an HTTP date.

    Bounded to `RETRY_AFTER_MAX_S`, and "inf" or "nan" is no value: a header a proxy or a
    broken server filled in must not pause a key or an entry until the next restart."""
    lowered = {name.lower(): value for name, value in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None and (seconds := _seconds(millis, 1000.0)) is not None:
        return seconds
    value = lowered.get("retry-after")
    if value is None:
        return None
    seconds = _seconds(value, 1.0)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(when.timestamp() - time.time(), 0.0), RETRY_AFTER_MAX_S)


def _seconds(text: str, per_second: float) -> float | None:
    try:
        value = float(text) / per_second
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return min(max(value, 0.0), RETRY_AFTER_MAX_S)


#: the longest message an HTTP error keeps
MESSAGE_CHARS = 300


def status_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProviderHTTPError:
    """One HTTP error status (with the API's error code and message) as our error type."""
    message = _capped(message)
    text = f"{code or ''} {message}".lower()
    if status in (400, 413, 422) and any(marker in text for marker in _CONTEXT_MARKERS):
        return ContextTooLong(message or "context length exceeded")
    if status == 402 or any(marker in text for marker in _BILLING_MARKERS):
        return ProviderHTTPError(status, message, retryable=False, code="billing")
    retryable = status in TRANSIENT_STATUSES or status >= 500
    return ProviderHTTPError(
        status,
        message,
        retry_after=parse_retry_after(headers or {}),
        retryable=retryable,
        code=code,
    )


def _capped(message: str) -> str:
    """At most MESSAGE_CHARS of a message: an SDK's message or a body without one can be a
    proxy's whole error page (100 KB of HTML), which would land in every log line."""
    if len(message) <= MESSAGE_CHARS:
        return message
    text = " ".join(message.split())
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def transport_error(
    exc: BaseException, *, connect_s: float, phase: str, seconds: float
) -> ProviderError:
    """A transport failure (the SDK's connection error or a raw httpx2 one) as our error type.

    A connect timeout is reported as such; any other timeout as `phase` (first_token or idle),
    which the caller knows from its ChunkTimer.
    """
    import httpx2

    cause = exc if isinstance(exc, httpx2.TransportError) else exc.__cause__
    if isinstance(cause, httpx2.ConnectTimeout | httpx2.PoolTimeout):
        return ProviderTimeout("connect", connect_s)
    if isinstance(cause, httpx2.TimeoutException):
        return ProviderTimeout(phase, seconds)
    detail = type(cause).__name__ if cause is not None else type(exc).__name__
    return ProviderHTTPError(0, f"connection failed ({detail})", retryable=True, code="connection")


def incomplete_stream() -> ProviderHTTPError:
    """The server closed a stream without saying the answer was finished."""
    return ProviderHTTPError(
        0, "stream ended before the model finished", retryable=True, code="connection"
    )


class StreamingProvider(Generic[SdkT]):
    """The shared half of a remote provider: key rotation around each stream over the lean
    transport (`SseClient`), the health probe through the official SDK, closing both. A
    subclass opens one stream (`_stream_once`), says how a key is sent (`_key_headers`), how
    an SDK client is made (`_make_sdk_client`) and which SDK exceptions mean what
    (`_probe_error`)."""

    name: str
    config: ProviderConfig
    _keys: KeyPool[dict[str, str]]
    _http: SseClient
    #: the SDK's modules, imported off the event loop before the first probe
    sdk_modules: tuple[str, ...] = ()
    _sdk_loading: asyncio.Task[None] | None = None

    def _setup(
        self, keys: Sequence[str], clock: Callable[[], float], pool_size: int | None
    ) -> None:
        self._keys = KeyPool(keys, self._key_headers, clock=clock)
        self._http = SseClient(
            connect_timeout_s=self.config.connect_timeout_s,
            pool_size=pool_size if pool_size is not None else DEFAULT_POOL_SIZE,
        )
        #: one SDK client per key, made by the first probe with that key
        self._sdk_clients: dict[str, SdkT] = {}
        self._check_sdk()

    def _check_sdk(self) -> None:
        """Fail at build time, as an eager import would, when the SDK is not installed."""
        for module in self.sdk_modules[:1]:
            if importlib.util.find_spec(module) is None:
                raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    @property
    def pool_size(self) -> int:
        return self._http.pool_size

    async def warm_up(self) -> None:
        """What a turn needs before its first request: nothing beyond aiohttp, which the
        gateway has loaded already. The SDK (most of a second of imports and ~14 MB) is loaded
        by the first health probe, if any."""

    async def _load_sdk(self) -> None:
        loop = asyncio.get_running_loop()
        if self._sdk_loading is None or self._sdk_loading.get_loop() is not loop:
            self._sdk_loading = loop.create_task(self._import_sdk())  # one load, many waiters
        await asyncio.shield(self._sdk_loading)

    async def _import_sdk(self) -> None:
        for module in self.sdk_modules:
            await asyncio.to_thread(importlib.import_module, module)

    def _key_headers(self, key: str) -> dict[str, str]:
        raise NotImplementedError

    def _make_sdk_client(self, key: str) -> SdkT:
        raise NotImplementedError

    def _stream_once(
        self, headers: dict[str, str], request: ChatRequest
    ) -> AsyncGenerator[ChatEvent, None]:
        raise NotImplementedError

    def _probe_error(self, exc: Exception) -> ProviderError | None:
        """The error an SDK exception from the probe stands for, or None to re-raise it."""
        raise NotImplementedError

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatEvent]:
        while True:
            index, headers = self._keys.pick()
            emitted = False
            try:
                async with aclosing(self._stream_once(headers, request)) as events:
                    async for event in events:
                        emitted = True
                        yield event
                return
            except ProviderHTTPError as exc:
                if emitted or not self._keys.penalize(index, exc):
                    raise
                log.warning(
                    "provider %s: key %d refused (HTTP %d), rotating", self.name, index, exc.status
                )

    async def probe(self) -> None:
        """A cheap reachability check (list the models). Raises a ProviderError when down."""
        await self._load_sdk()
        index, _ = self._keys.pick()
        key = self._keys.key(index)
        client = self._sdk_clients.get(key)
        if client is None:
            client = self._sdk_clients[key] = self._make_sdk_client(key)
        sdk_client: Any = client  # both SDKs: client.models.list(), client.close()
        try:
            async with asyncio.timeout(self.config.connect_timeout_s + 5.0):
                await sdk_client.models.list()
        except TimeoutError:
            raise ProviderHTTPError(0, "health probe timed out", code="connection") from None
        except Exception as exc:
            mapped = self._probe_error(exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        clients: list[Any] = list(self._sdk_clients.values())
        self._sdk_clients.clear()
        for client in clients:
            await client.close()
        await self._http.aclose()
