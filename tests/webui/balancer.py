"""A balancer in front of two replicas' web UIs, as deploy/scale/nginx.conf is: it passes each
request on with its Host header (so every replica sees the page's own origin) and its body,
cookies and answer unchanged. Which replica gets a request is the test's choice (`pick`), so
a test can send each step of a flow to the replica that does not know it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from bot.gateway import Gateway
from tests.webui.conftest import serving

#: hop-by-hop headers, which a proxy does not pass on
_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "content-length"}


@contextlib.asynccontextmanager
async def balancer(
    replicas: list[Gateway], pick: Callable[[web.Request], int]
) -> AsyncIterator[tuple[int, list[str]]]:
    """Serve on 127.0.0.1; yields its port and the log of "<replica> <method> <path>"."""
    ports = [gw.http.port for gw in replicas if gw.http is not None]
    seen: list[str] = []
    async with aiohttp.ClientSession(auto_decompress=False) as upstream:

        async def forward(request: web.Request) -> web.StreamResponse:
            n = pick(request)
            seen.append(f"{n} {request.method} {request.path}")
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
            async with upstream.request(
                request.method,
                f"http://127.0.0.1:{ports[n]}{request.path_qs}",
                headers=headers,
                data=await request.read(),
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                out = web.Response(status=resp.status, body=body)
                for key, value in resp.headers.items():
                    if key.lower() not in _HOP:
                        out.headers.add(key, value)
                return out

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        async with serving(app) as port:
            yield port, seen
