"""A plain HTTP forward proxy on 127.0.0.1, to show which requests go through a proxy
from the environment."""

from __future__ import annotations

import asyncio
import base64
import functools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest


class ForwardProxy:
    """A plain HTTP forward proxy on 127.0.0.1: records each connection's target and pipes
    the bytes through to it; a CONNECT (the way to an https:// page) opens a tunnel to the
    host:port it names, or answers 502 when that cannot be reached, and the target it
    records is that host:port (in `targets`, and in `connects` with the CONNECT's Host
    header, which a client may fill with a name the request line does not carry). A
    request that is no WebSocket upgrade is sent on with `Connection: close`, so that every
    request comes on a connection of its own and is recorded. With `credentials` (login,
    password) it asks for them as a real one does: a request without that
    `Proxy-Authorization` is answered 407 and recorded in `refused`."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.targets: list[str] = []
        #: each CONNECT's (target, Host header or None)
        self.connects: list[tuple[str, str | None]] = []
        self.refused: list[str] = []
        self._authorization = (
            None
            if credentials is None
            else b"Basic " + base64.b64encode(":".join(credentials).encode())
        )
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._pipes:
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, rest = head.split(b" ", 2)
            if self._authorization is not None and not _authorized(rest, self._authorization):
                self.refused.append(target.decode())
                writer.write(_PROXY_AUTH_REQUIRED)
                await writer.drain()
                return
            self.targets.append(target.decode())
            if method == b"CONNECT":
                self.connects.append((target.decode(), _header(rest, b"host")))
                await self._tunnel(target.decode(), reader, writer)
                return
            host_port, _, path = target.decode().split("://", 1)[-1].partition("/")
            host, _, port = host_port.partition(":")
            up_reader, upstream = await asyncio.open_connection(host, int(port))
            upstream.write(b" ".join([method, b"/" + path.encode(), _one_request(rest)]))
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # stopped: a tunnel kept open (keep-alive) ends here, quietly
        finally:
            for end in (writer, upstream):
                if end is not None:
                    end.close()
            self._pipes.discard(task)

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port = target.rpartition(":")
        try:
            up_reader, upstream = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            writer.write(_BAD_GATEWAY)
            await writer.drain()
            return
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        finally:
            upstream.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while block := await reader.read(65536):
        writer.write(block)
        await writer.drain()
    writer.close()


_BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_PROXY_AUTH_REQUIRED = (
    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
    b'Proxy-Authenticate: Basic realm="proxy"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
)


def _authorized(rest: bytes, expected: bytes) -> bool:
    return _header(rest, b"proxy-authorization") == expected.decode()


def _header(rest: bytes, wanted: bytes) -> str | None:
    """The value of the header `wanted` (lower case) in a request head after its method
    and target, or None."""
    for name, _, value in (line.partition(b":") for line in rest.split(b"\r\n")[1:]):
        if name.strip().lower() == wanted:
            return value.strip().decode()
    return None


def _one_request(rest: bytes) -> bytes:
    """The request line's version and the headers, with the connection closed after the
    answer (a WebSocket upgrade keeps its own `Connection` header), and the proxy's
    credentials kept from the server, as a proxy keeps them."""
    lines = [
        line for line in rest.split(b"\r\n") if not line.lower().startswith(b"proxy-authorization:")
    ]
    if any(line.lower().startswith(b"upgrade:") for line in lines):
        return b"\r\n".join(lines)
    kept = [line for line in lines if not line.lower().startswith((b"connection:", b"keep-alive:"))]
    return b"\r\n".join([kept[0], b"Connection: close", *kept[1:]])


@asynccontextmanager
async def environment_proxy(
    monkeypatch: pytest.MonkeyPatch,
    credentials: tuple[str, str] | None = None,
    variables: tuple[str, ...] = ("HTTP_PROXY",),
) -> AsyncIterator[ForwardProxy]:
    """A ForwardProxy that `variables` name (with its `credentials` in the URL), with
    every other proxy variable unset."""
    proxy = ForwardProxy(credentials)
    await proxy.start()
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    sign_in = "" if credentials is None else "{}:{}@".format(*credentials)
    for name in variables:
        monkeypatch.setenv(name, f"http://{sign_in}127.0.0.1:{proxy.port}")
    try:
        yield proxy
    finally:
        await proxy.stop()


@contextmanager
def thread_hops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """The functions the running loop hands to a worker thread while this is open
    (`run_in_executor`, which `asyncio.to_thread` goes through): aiohttp's `trust_env` made
    two such round trips for every request."""
    loop = asyncio.get_running_loop()
    hops: list[object] = []
    run_in_executor = loop.run_in_executor

    def counted(executor: object, func: object, *args: object) -> asyncio.Future[object]:
        # to_thread hands over partial(context.run, the function, ...)
        hops.append(func.args[0] if isinstance(func, functools.partial) else func)
        return run_in_executor(executor, func, *args)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(loop, "run_in_executor", counted)
        yield hops


_PROXY_VARIABLES = (
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy",
    "ALL_PROXY", "all_proxy", "WS_PROXY", "ws_proxy", "WSS_PROXY", "wss_proxy",
)  # fmt: skip
