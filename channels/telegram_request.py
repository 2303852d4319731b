"""python-telegram-bot's requests over aiohttp, which the gateway has loaded already.

PTB's own request class builds an httpx client, whose transport imports httpcore, h11 and
anyio's asyncio backend with the first client (~40 ms of CPU at every start). This one keeps
what the adapter relied on httpx for:

- A request that never left is told apart from one whose answer was lost: `NotSent` marks
  the errors of a connection that was never made (refused, unreachable, its connect timed
  out, the proxy refused it) and of a pool with no free connection in time. Only those are
  safe to send again; a lost answer (the server hung up, a read timed out) is not.
- A pool timeout raises `TimedOut`, as PTB's does, and says nothing was sent.
- aiohttp has no write timeout. An upload is written in pieces, and each piece must be
  taken within the write timeout (httpx bounded each socket write the same way), so an
  upload that stalls ends, while a slow one that moves does not.
- Proxies come from the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), as with httpx, but
  only http:// ones (`bot.proxy_env.check_proxy_env` refuses the others at the start), looked
  up once per address (`ProxyLookup`), not in two thread hops for every send and edit.
- No error text holds the token: aiohttp's errors can carry the URL, which carries it, so
  they are redacted (`scrub`) as a log line is.
- TLS verifies against the system's CA store (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured),
  through the context aiohttp builds once at import, as Slack's and Discord's sessions do: a
  context of the adapter's own (certifi's bundle, as httpx had) cost ~20 ms of every start.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from bot.proxy_env import ProxyLookup
from bot.redaction import scrub

#: an upload goes out in pieces of this size; each must be taken within the write timeout
_UPLOAD_PIECE = 64 * 1024
#: what a multipart header value may not hold as it is (the HTML form rules, as httpx)
_FORM_ESCAPES = re.compile(r'["\\\x00-\x1a\x1c-\x1f]')
_FORM_ESCAPED = {'"': "%22", "\\": "\\\\"}


class NotSent(Exception):
    """Marks a request error raised before anything was written to Telegram: sending the
    request again cannot make it happen twice."""


class ConnectFailed(NotSent, NetworkError):
    """No connection to Telegram (or to the proxy) could be made."""


class ConnectTimedOut(NotSent, TimedOut):
    """The connection was not made within the connect timeout."""


class PoolTimedOut(NotSent, TimedOut):
    """Every connection of the pool stayed busy for the whole pool timeout."""


def new_session(
    pool_size: int, timeout: aiohttp.ClientTimeout | None = None
) -> aiohttp.ClientSession:
    """A session of the adapter: aiohttp's verifying TLS context. Not `trust_env`: the
    environment's proxy is given with each request (`ProxyLookup`)."""
    connector = aiohttp.TCPConnector(limit=pool_size)
    return aiohttp.ClientSession(
        connector=connector, trust_env=False, timeout=timeout or aiohttp.ClientTimeout()
    )


class AiohttpRequest(BaseRequest):
    """`telegram.request.BaseRequest` over an aiohttp session; the timeouts mean what they
    mean for PTB's `HTTPXRequest` (pool: waiting for a free connection)."""

    def __init__(
        self,
        connection_pool_size: int,
        *,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
        proxies: ProxyLookup | None = None,
    ) -> None:
        self._pool_size = connection_pool_size
        # the pool: aiohttp's connector waits for a free connection without a timeout of
        # its own, so the wait is here, where its timeout can say nothing was sent
        self._free = asyncio.Semaphore(connection_pool_size)
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        #: shared by the channel's requests: the lookup is made once for Telegram's address
        self._proxies = proxies or ProxyLookup()

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = new_session(self._pool_size)

    async def shutdown(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        upload = request_data is not None and request_data.contains_files
        read = _given(read_timeout, self._read_timeout)
        connect = _given(connect_timeout, self._connect_timeout)
        pool = _given(pool_timeout, self._pool_timeout)
        write = _given(write_timeout, self._media_write_timeout if upload else self._write_timeout)
        try:
            async with asyncio.timeout(pool):
                await self._free.acquire()
        except TimeoutError:
            raise PoolTimedOut(
                "Pool timeout: all connections in the connection pool are occupied. "
                "Request was *not* sent to Telegram."
            ) from None
        try:
            if self._session is None:  # shut down while this one waited for a connection
                raise NetworkError("Telegram's requests were shut down; this one was not sent")
            return await self._exchange(
                self._session, url, method, request_data, read, write, connect
            )
        finally:
            self._free.release()

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        url: str,
        method: str,
        request_data: RequestData | None,
        read: float | None,
        write: float | None,
        connect: float | None,
    ) -> tuple[int, bytes]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
        headers = {"User-Agent": self.USER_AGENT}
        data: aiohttp.FormData | AsyncIterator[bytes] | None = None
        watch: _WriteWatch | None = None
        if request_data is not None and request_data.contains_files:
            content_type, body = _multipart(request_data)
            headers.update({"Content-Type": content_type, "Content-Length": str(len(body))})
            watch = _WriteWatch(body, write)
        elif request_data is not None:
            data = aiohttp.FormData(request_data.json_parameters)
        proxy = await self._proxies.for_url(url)
        try:
            # the write watch's clock: off until the upload's first piece is asked for
            async with asyncio.timeout(None) as deadline:
                if watch is not None:
                    data = watch.pieces(deadline)
                async with session.request(
                    method,
                    url,
                    data=data,
                    headers=headers,
                    timeout=timeout,
                    proxy=proxy,
                    allow_redirects=False,  # as httpx: an answer is Telegram's, not a detour
                ) as response:
                    return response.status, await response.read()
        except aiohttp.ConnectionTimeoutError as exc:
            raise ConnectTimedOut(f"Timed out connecting to Telegram ({_text(exc)})") from None
        except (aiohttp.ClientConnectorError, aiohttp.ClientHttpProxyError) as exc:
            raise ConnectFailed(_text(exc)) from None
        except aiohttp.ServerTimeoutError as exc:
            raise TimedOut(f"Timed out waiting for Telegram's answer ({_text(exc)})") from None
        except TimeoutError:
            raise TimedOut("Timed out: Telegram stopped taking the upload") from None
        except aiohttp.ClientError as exc:
            raise NetworkError(_text(exc)) from None
        finally:
            if watch is not None:
                watch.active = False


class _WriteWatch:
    """Hands an upload to aiohttp piece by piece; aiohttp asks for the next piece once the
    last one is written (it waits while the socket's buffer is full), so each request for a
    piece moves the deadline on by the write timeout, and the last one turns it off (the
    answer is then bounded by the read timeout)."""

    def __init__(self, body: bytes, write_timeout: float | None) -> None:
        self.body = body
        self.write_timeout = write_timeout
        #: cleared when the request is over: aiohttp's writer may still be winding down
        self.active = True

    async def pieces(self, deadline: asyncio.Timeout) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        view = memoryview(self.body)
        for start in range(0, len(view), _UPLOAD_PIECE):
            if self._running(deadline) and self.write_timeout is not None:
                deadline.reschedule(loop.time() + self.write_timeout)
            yield bytes(view[start : start + _UPLOAD_PIECE])
        if self._running(deadline):
            deadline.reschedule(None)

    def _running(self, deadline: asyncio.Timeout) -> bool:
        # a deadline that fired, or a request already over, can no longer be moved
        return self.active and not deadline.expired()


def _multipart(request_data: RequestData) -> tuple[str, bytes]:
    """(content type, body) of a multipart upload, written as httpx writes one: names and
    file names in UTF-8 with only quotes, backslashes and control characters escaped (the
    HTML form rules). aiohttp's own form percent-encodes every non-ASCII character, and
    Telegram would show "r%C3%A9sum%C3%A9.pdf" as the document's name."""
    boundary = secrets.token_hex(16)
    parts: list[bytes] = []
    for name, value in request_data.json_parameters.items():
        parts.append(_part_head(boundary, name) + value.encode() + b"\r\n")
    for name, (filename, content, mime) in request_data.multipart_data.items():
        data = content if isinstance(content, bytes) else content.read()
        parts.append(_part_head(boundary, name, filename, mime) + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)


def _part_head(boundary: str, name: str, filename: str | None = None, mime: str = "") -> bytes:
    disposition = f'form-data; name="{_form_quoted(name)}"'
    if filename is not None:
        disposition += f'; filename="{_form_quoted(filename)}"'
    head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
    if mime:
        head += f"Content-Type: {mime}\r\n"
    return (head + "\r\n").encode()


def _form_quoted(value: str) -> str:
    return _FORM_ESCAPES.sub(lambda m: _FORM_ESCAPED.get(m[0]) or f"%{ord(m[0]):02X}", value)


def _given(value: ODVInput[float], default: float | None) -> float | None:
    return default if isinstance(value, DefaultValue) else value


def _text(exc: BaseException) -> str:
    # aiohttp's errors can name the URL, which holds the token: redacted as a log line is
    detail = str(exc)
    name = f"aiohttp.{type(exc).__name__}"
    return scrub(f"{name}: {detail}" if detail else name)
