"""`decapod status`: asks the running gateway (GET /admin/status on its HTTP server) for its
channels, providers, sessions, queue and uptime.

The address and token come from the runtime file the gateway wrote in the home
(bot/runtime.py); without one, the config's [http] address is asked. DECAPOD_ADMIN_TOKEN
(the token POST /setup gave) reaches a gateway whose home this user cannot read, such as a
systemd service's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

#: exit codes (as in the --help text)
OK, DEGRADED, REFUSED, NOT_RUNNING = 0, 1, 4, 3
TOKEN_ENV = "DECAPOD_ADMIN_TOKEN"

_EPILOG = (
    "exit codes: 0 running and healthy; 1 running but degraded (a channel down, every "
    "model's breaker open, or a start-up step run after ready failed); 3 no gateway "
    "answers; 4 the gateway refused the token. "
    f"The token is read from HOME/run/gateway.json, or from ${TOKEN_ENV}."
)


def add_subparsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "status",
        help="ask the running gateway for its channels, providers, sessions and queue",
        epilog=_EPILOG,
    )
    parser.add_argument("--json", action="store_true", help="print the gateway's answer as JSON")
    parser.add_argument("--url", help="the gateway's address (default: what it wrote in HOME)")
    parser.set_defaults(run_command=run)


def run(args: argparse.Namespace) -> int:
    from bot.config import load_config
    from bot.runtime import local_url, read_runtime

    config = load_config(args.config, args.home)
    runtime = read_runtime(config.home)
    if runtime is None and args.url is None and not config.http.enabled:
        print(
            "decapod: the gateway's HTTP server is off ([http] enabled = false), and "
            "`decapod status` asks it there",
            file=sys.stderr,
        )
        return NOT_RUNNING
    url = args.url or (
        runtime.url if runtime else local_url(config.http.host, config.http.port)
    ).rstrip("/")
    token = os.environ.get(TOKEN_ENV) or (runtime.token if runtime else None)
    try:
        report = fetch_status(url, token)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403, 429):
            print(
                f"decapod: the gateway at {url} refused the admin token ({exc.code}): "
                f"run this as the user that runs it, or set ${TOKEN_ENV} to the token "
                "POST /setup gave",
                file=sys.stderr,
            )
            return REFUSED
        print(f"decapod: the gateway at {url} answered {exc.code}", file=sys.stderr)
        return DEGRADED
    except (urllib.error.URLError, OSError, ValueError):
        # ValueError: the answer is not JSON, so whatever listens there is not a gateway
        print(f"no gateway is running at {url} (start one with `decapod run`)", file=sys.stderr)
        return NOT_RUNNING
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(render_status(url, report))
    return OK if report.get("status") == "ok" else DEGRADED


def fetch_status(url: str, token: str | None, timeout: float = 5.0) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/admin/status")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    # the gateway is on this machine: a configured HTTP proxy must not be asked for it
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        report = json.loads(response.read().decode("utf-8"))
    if not isinstance(report, dict):
        raise ValueError("not a status report")
    return report


def render_status(url: str, report: dict[str, Any]) -> str:
    from bot.progress import human_seconds

    lines = [
        f"gateway    {report.get('status', '?')} at {url} ({report.get('version', '?')}, "
        f"up {human_seconds(float(report.get('uptime_s', 0)))})"
    ]
    channels: dict[str, dict[str, Any]] = report.get("channels") or {}
    if not channels:
        lines.append("channels   none configured")
    for n, (name, health) in enumerate(sorted(channels.items())):
        state = "running" if health.get("running") else "DOWN"
        extra = ", ".join(
            f"{k} {v}" for k, v in sorted(health.items()) if k not in ("type", "running")
        )
        label = "channels" if n == 0 else ""
        kind = health.get("type", "?")
        lines.append(f"{label:<10} {name} ({kind}): {state}" + (f"; {extra}" if extra else ""))
    for n, entry in enumerate(report.get("providers") or []):
        label = "providers" if n == 0 else ""
        detail = entry.get("state", "?")
        if entry.get("cooldown_remaining_s"):
            detail += f", retried in {human_seconds(entry['cooldown_remaining_s'])}"
        if entry.get("last_error"):
            detail += f"; last error: {entry['last_error']}"
        lines.append(f"{label:<10} {entry.get('name', '?')}: {detail}")
    lines.append(
        f"sessions   {report.get('sessions', 0)} open, {report.get('active_turns', 0)} "
        f"turn(s) running, {report.get('queue_depth', 0)} queued"
    )
    if report.get("sandbox"):
        lines.append(f"sandbox    {report['sandbox']}")
    warm_up: dict[str, str] = report.get("warm_up") or {}
    if any(state != "done" for state in warm_up.values()):  # still starting, or failed
        lines.append("warm-up    " + "; ".join(f"{n}: {s}" for n, s in warm_up.items()))
    lines += _cluster_lines(report.get("cluster"))
    return "\n".join(lines)


def _cluster_lines(cluster: dict[str, Any] | None) -> list[str]:
    """This replica's role, and the live replicas on its database (a PostgreSQL store)."""
    if not cluster:
        return []
    lines = [f"replica    {cluster.get('replica', '?')} ({cluster.get('role', '?')})"]
    replicas = cluster.get("replicas")
    if replicas is None:
        lines.append(f"cluster    unknown: {cluster.get('replicas_error', '?')}")
    elif cluster.get("role") != "single":
        lines.append(f"cluster    {len(replicas)} live replica(s)")
        for entry in replicas:
            seen = f", seen {entry['seen_s']:g}s ago" if "seen_s" in entry else ""
            lines.append(f"{'':<10} {entry.get('id', '?')}: {entry.get('role', '?')}{seen}")
    return lines
