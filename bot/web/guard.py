"""The address guard: web_fetch reaches public addresses only.

A host is resolved once, every address it resolves to is checked, and the connection is
made to exactly those addresses (`GuardedResolver` is the connector's resolver, so there is
no second lookup a rebinding DNS server could answer differently). Hosts written as
addresses, in any form `inet_aton` accepts (0x7f000001, 2130706433, 0177.0.0.1, 127.1), are
checked before a request is made. IPv6 addresses that carry an IPv4 address (mapped, 6to4,
NAT64) are checked for both.

Refused unless listed in `web.allow_hosts`: loopback, private, link-local, CGNAT, reserved
and other non-public ranges (all allowed by `web.allow_private`), cloud metadata addresses
(allowed only by address), multicast and the unspecified address (never).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from aiohttp.abc import AbstractResolver, ResolveResult

from bot.errors import ToolError

IPAddress = IPv4Address | IPv6Address

#: instance metadata services (AWS/GCP/OpenStack, ECS tasks, AWS IPv6, Alibaba, Oracle, Azure)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "100.100.100.200",
        "192.0.0.192",
        "168.63.129.16",
    )
)
_CGNAT = IPv4Network("100.64.0.0/10")
_NAT64 = IPv6Network("64:ff9b::/96")
_LOCAL_NAT64 = IPv6Network("64:ff9b:1::/48")
_LEGACY_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


class FetchRefused(ToolError):
    """The guard refused a URL or an address: nothing was sent."""


def parse_host_literal(host: str) -> IPAddress | None:
    """The address a host written as an address stands for, or None for a name."""
    bare = host.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        return _legacy_ipv4(bare)


def _legacy_ipv4(host: str) -> IPv4Address | None:
    # inet_aton's forms: 1-4 parts, each decimal, octal (0...) or hex (0x...); the last part
    # fills the bytes the others left, so "127.1" and "2130706433" are both 127.0.0.1
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_LEGACY_PART.fullmatch(p) for p in parts):
        return None
    nums = [_legacy_number(p) for p in parts]
    *head, last = nums
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for i, n in enumerate(head):
        value |= n << (24 - 8 * i)
    return IPv4Address(value)


def _legacy_number(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    return int(part, 8 if part[0] == "0" else 10)


def embedded_ipv4(ip: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), if any."""
    if isinstance(ip, IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _kind(ip: IPAddress) -> str | None:
    """What makes an address non-public, or None for a public one."""
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if isinstance(ip, IPv4Address) and ip in _CGNAT:
        return "shared (CGNAT)"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global or (isinstance(ip, IPv6Address) and ip in _LOCAL_NAT64):
        return "non-public"
    return None


class AddressGuard:
    def __init__(self, *, allow_private: bool = False, allow_hosts: Iterable[str] = ()) -> None:
        self.allow_private = allow_private
        self._names: set[str] = set()
        self._suffixes: list[str] = []
        self._networks: list[IPv4Network | IPv6Network] = []
        for entry in allow_hosts:
            entry = entry.strip().lower().rstrip(".")
            try:
                self._networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                if entry.startswith("*."):
                    self._suffixes.append(entry[1:])
                else:
                    self._names.add(entry)

    def _host_listed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self._names or any(host.endswith(s) for s in self._suffixes)

    def refusal(self, host: str, ip: IPAddress) -> str | None:
        """Why `host` may not be fetched at `ip`, or None."""
        if ip.is_multicast or ip.is_unspecified:
            return "a multicast or unspecified address"
        if any(ip.version == net.version and ip in net for net in self._networks):
            return None
        inner = embedded_ipv4(ip)
        candidates = [ip] if inner is None else [inner, ip]
        if any(c in METADATA_ADDRESSES for c in candidates):
            return "a cloud metadata address"
        if self.allow_private or self._host_listed(host):
            return None
        for candidate in candidates:
            kind = _kind(candidate)
            if kind is not None:
                return f"a {kind} address"
        return None

    def check(self, host: str, addresses: Sequence[IPAddress]) -> None:
        """Refuse the host if any address it resolved to is refused (one bad record in a
        mixed answer is how rebinding attacks start)."""
        if not addresses:
            raise FetchRefused(f"refused: {host} did not resolve to any address")
        for ip in addresses:
            why = self.refusal(host, ip)
            if why is not None:
                shown = host if str(ip) == host.strip("[]") else f"{host} ({ip})"
                raise FetchRefused(
                    f"refused: {shown} is {why}; only public addresses are fetched "
                    "(web.allow_hosts lists exceptions)"
                )


class GuardedResolver(AbstractResolver):
    """Resolves through `base`, checks every address, and hands the connector exactly the
    addresses it checked."""

    def __init__(self, guard: AddressGuard, base: AbstractResolver) -> None:
        self.guard = guard
        self.base = base

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.base.resolve(host, port, family)
        self.guard.check(host, [ipaddress.ip_address(r["host"]) for r in results])
        return results

    async def close(self) -> None:
        await self.base.close()
