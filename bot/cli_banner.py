"""What `decapod run` prints once the gateway is up: where to chat, and the HTTP endpoints
it answers (read from its router, so none is named that does not answer)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot import __version__

if TYPE_CHECKING:
    from bot.gateway import Gateway
    from bot.http import HttpServer


def start_banner(gateway: Gateway) -> str:
    """What `decapod run` prints once it is up: where to chat, and the HTTP endpoints that
    exist on this gateway (read from its router, so none is named that does not answer)."""
    from bot.runtime import local_url
    from bot.webui import CHAT_PAGE

    config = gateway.config
    channels = ", ".join(gateway.channels) or "none configured"
    lines = [
        f"Decapod {__version__} running (channels: {channels})",
        "  chat in a terminal:  decapod chat",
    ]
    http = gateway.http
    if http is None:
        lines.append("  state and logs:      decapod status; decapod logs -f")
        return "\n".join(lines)
    url = local_url(config.http.host, http.port)
    webui = config.webui.enabled
    if webui:
        lines.append(f"  chat in a browser:   {url}{CHAT_PAGE}")
    # the web UI's pages and the platforms' webhooks are public routes: left out here
    admin = http_paths(http).get("GET", [])
    lines.append(f"  http:                {url}  " + ", ".join(admin))
    lines.append("  state and logs:      decapod status; decapod logs -f")
    if gateway.setup_code is not None:
        # the terminal only: never the log, which may be shipped elsewhere
        if webui:
            lines += [
                f"First start: open {url}{CHAT_PAGE} and enter the setup code",
                f"  {gateway.setup_code}",
                "(one use; only from this machine)",
            ]
        if not http.auth.configured:
            protected = ", ".join(p for p in admin if p != "/health")
            lead = "Or create" if webui else "First start: create"
            lines += [
                f"{lead} the admin token for {protected} with",
                f"  curl -X POST -H 'X-Setup-Code: {gateway.setup_code}' {url}/setup",
                "(one use; only from this machine)",
            ]
    return "\n".join(lines)


def http_paths(http: HttpServer) -> dict[str, list[str]]:
    """Method -> paths the server answers, without the public ones (the platforms' webhooks,
    the web UI's pages), which are named apart or not at all."""
    found: dict[str, list[str]] = {}
    for route in http.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path and path not in http.auth.webhook_paths and route.method != "HEAD":
            found.setdefault(route.method, []).append(path)
    return found
