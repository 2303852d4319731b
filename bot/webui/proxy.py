"""What a request says about its client, believing forwarded headers only from the reverse
proxies listed in `webui.trusted_proxies`: from anyone else they are ignored, so a direct
caller cannot claim another address (to dodge the login throttle) or claim TLS."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from aiohttp import web

from bot.http import is_local_request

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Forwarding:
    def __init__(self, trusted_proxies: list[str]) -> None:
        self._trusted: list[_Network] = [
            ipaddress.ip_network(p, strict=False) for p in trusted_proxies
        ]

    def _trusted_address(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def via_proxy(self, request: web.Request) -> bool:
        return self._trusted_address(request.remote or "")

    def client(self, request: web.Request) -> str:
        """The client address: the nearest X-Forwarded-For hop that is not a trusted proxy."""
        peer = request.remote or "?"
        if not self.via_proxy(request):
            return peer
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        for hop in reversed([h for h in hops if h]):
            if not self._trusted_address(hop):
                return hop
        return peer

    def secure(self, request: web.Request) -> bool:
        if request.secure:
            return True
        if not self.via_proxy(request):
            return False
        return request.headers.get("X-Forwarded-Proto", "").lower() == "https"

    def host(self, request: web.Request) -> str:
        if self.via_proxy(request) and "X-Forwarded-Host" in request.headers:
            return request.headers["X-Forwarded-Host"].split(",")[0].strip()
        return request.host or ""

    def same_origin(self, request: web.Request) -> bool:
        """No Origin (a same-origin GET or an old browser), or one naming this very host."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        return urlsplit(origin).netloc.lower() == self.host(request).lower()

    def may_set_up(self, request: web.Request) -> bool:
        """The first-run setup is offered to this machine, or through a configured proxy."""
        return is_local_request(request) or self.via_proxy(request)
