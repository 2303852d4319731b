"""The HTTP surface: /health and /metrics on 127.0.0.1 by default; platform webhooks mount here.

/health answers without details to anyone who can reach it; details, /metrics and /admin/...
need the admin token (bot/security/http_auth.py).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from bot.security.http_auth import AdminAuth

log = logging.getLogger("decapod.http")

_FORWARDING = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")


def is_local_request(request: web.Request) -> bool:
    """Local means all three: a loopback peer, no forwarding headers, a loopback Host."""
    peer = request.remote or ""
    try:
        if not ipaddress.ip_address(peer).is_loopback:
            return False
    except ValueError:
        return False
    if any(h in request.headers for h in _FORWARDING):
        return False
    return is_loopback_host((request.host or "").rsplit(":", 1)[0].strip("[]"))


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback address; a name that merely starts with 127. is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, default=str).encode(),
        status=status,
        content_type="application/json",
    )


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        health: Callable[[], Awaitable[dict[str, Any]]],
        metrics: Callable[[], tuple[bytes, str]],
        auth: AdminAuth,
    ) -> None:
        self.host, self.port = host, port
        self.auth = auth
        self.app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=[auth.middleware])
        self._health = health
        self._metrics = metrics
        self.app.router.add_get("/health", self._on_health)
        self.app.router.add_get("/metrics", self._on_metrics)
        self.app.router.add_get("/admin/status", self._on_admin_status)
        self.app.router.add_post("/setup", auth.setup)
        self._runner: web.AppRunner | None = None

    def add_route(self, method: str, path: str, handler: Any, *, public: bool = False) -> None:
        """Mount a route; `public` ones (platform webhooks) must verify their own callers: the
        admin token is neither asked for nor throttled on them."""
        self.app.router.add_route(method, path, handler)
        if public:
            self.auth.webhook_paths.add(path)

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("http listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _on_health(self, request: web.Request) -> web.Response:
        report = await self._health()
        status = 200 if report.get("status") == "ok" else 503
        if not self.auth.is_admin(request):
            return _json({"status": report.get("status")}, status)
        return _json(report, status)

    async def _on_admin_status(self, request: web.Request) -> web.Response:
        return _json(await self._health())

    async def _on_metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._metrics()
        return web.Response(body=body, headers={"Content-Type": content_type})
