"""`python -m bot.healthcheck`: exit 0 when the gateway's /health answers "ok", else 1.

The container's HEALTHCHECK runs it: the slim image has no curl, and the address comes from
the same config (file and DECAPOD_* variables) the gateway itself reads. A gateway listening
on every interface is asked on loopback.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request


def health_url(host: str, port: int) -> str:
    from bot.runtime import local_url

    return f"{local_url(host, port)}/health"


def check(url: str, timeout_s: float) -> tuple[bool, str]:
    # never through an HTTP_PROXY from the environment: the gateway is on this host
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with direct.open(url, timeout=timeout_s) as response:
            status = json.loads(response.read() or b"{}").get("status")
    except urllib.error.HTTPError as exc:  # 503: the gateway answers, something is down
        return False, f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"{url}: {exc}"
    return status == "ok", f"{url}: {status}"


def main(timeout_s: float = 4.0) -> int:
    from bot.config import load_config
    from bot.errors import ConfigError

    try:
        config = load_config()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 1
    if not config.http.enabled:
        print("the HTTP server is off ([http] enabled = false): nothing answers /health")
        return 1
    ok, line = check(health_url(config.http.host, config.http.port), timeout_s)
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
