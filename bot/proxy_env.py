"""The proxy variables of the environment, checked once for every aiohttp session that
trusts them (the platforms' requests, the models' streams, remote embeddings).

aiohttp takes HTTPS_PROXY, HTTP_PROXY and NO_PROXY from the environment, as httpx does, but
only http:// proxies: it ignores an https:// one (and connects directly, around it) and fails
every request through one written without a scheme. `check_proxy_env` refuses such a variable
at the start, naming it, rather than requests that fail one by one or leave unproxied.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from bot.errors import ConfigError


def check_proxy_env(environ: Mapping[str, str] = os.environ) -> None:
    """ConfigError for a proxy variable the sessions cannot use. The value is not shown: it
    may hold the proxy's password."""
    for name, value in environ.items():
        if name.lower() not in ("http_proxy", "https_proxy") or not value:
            continue
        scheme, found, _ = value.partition("://")
        if not found:
            problem = "has no scheme; write it as http://host:port"
        elif scheme.lower() != "http":
            problem = (
                f"is a {scheme.lower()}:// proxy; Decapod's requests go through http:// "
                "proxies only (give the proxy's http:// address)"
            )
        else:
            try:
                parts = urlsplit(value)
                parts.port  # noqa: B018  (reading it raises for a port that is not a number)
                valid = bool(parts.hostname)
            except ValueError:  # a bracket left open, a port that is not a number
                valid = False
            if valid:
                continue
            problem = "is not a valid URL; write it as http://host:port"
        raise ConfigError(f"the environment variable {name} {problem}")


def proxy_for(url: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """The proxy of the environment for `url` (None: connect directly), for a client that
    takes one proxy rather than the environment, as discord.py does."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    # as urllib and aiohttp read them: the lower-case name wins over the upper-case one
    proxies = {
        name.lower().removesuffix("_proxy"): value
        for name, value in sorted(environ.items(), key=lambda item: item[0].islower())
        if name.lower().endswith("_proxy") and value
    }
    proxy = proxies.get(scheme)
    if proxy is None or _bypassed(parts.hostname or "", proxies.get("no", "")):
        return None
    return proxy


def _bypassed(host: str, no_proxy: str) -> bool:
    """NO_PROXY as urllib reads it: `*`, or names that the host is or ends in."""
    if no_proxy.strip() == "*":
        return True
    names = (name.strip().lstrip(".").lower() for name in no_proxy.split(","))
    return any(host == name or host.endswith("." + name) for name in names if name)
